"""Where the scripts find things: the repository root and the shared data beside it.

The library never looks outside what it is given; these defaults belong to the scripts, which run from a
checkout. $VCWC_DATA overrides the data folder.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "results"


def shared_data_dir() -> Path:
    return Path(os.environ.get("VCWC_DATA") or REPO_ROOT.parent / "shared" / "data")
