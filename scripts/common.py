"""What the scripts share: the repository root, the shared data beside it, and which tensors vcwc codes.

The library never looks outside what it is given; these defaults belong to the scripts, which run from a
checkout. $VCWC_DATA overrides the data folder.
"""

import os
from pathlib import Path

from vcwc.recipe import Selection

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "results"


def shared_data_dir() -> Path:
    return Path(os.environ.get("VCWC_DATA") or REPO_ROOT.parent / "shared" / "data")


def coded(state_dict: dict, selection: Selection = Selection()) -> dict:
    """The tensors of a state dict that a recipe with this selection codes (torch tensors)."""
    return {
        name: tensor
        for name, tensor in state_dict.items()
        if selection.is_coded(name, tensor.is_floating_point(), tuple(tensor.shape))
    }
