"""What the scripts share: the repository root, the shared data beside it, which tensors vcwc codes, and
a way to run a command measuring its time and memory.

The library never looks outside what it is given; these defaults belong to the scripts, which run from a
checkout. $VCWC_DATA overrides the data folder.
"""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from vcwc.files import atomic_write
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


def run_measured(command: list[str]) -> dict:
    """Wall seconds, the peak RSS (bytes) of the command's process and the largest of its children's, and
    what it printed on stdout."""
    import psutil

    process = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    peak = children = 0
    done = threading.Event()

    def watch():
        nonlocal peak, children
        while not done.is_set():
            try:
                peak = max(peak, process.memory_info().rss)
                children = max([children, *(c.memory_info().rss for c in process.children(recursive=True))])
            except psutil.Error:
                pass
            time.sleep(0.05)

    start = time.perf_counter()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr.decode()[-2000:]}")
    return {"seconds": seconds, "peak_rss_bytes": peak, "ffmpeg_peak_rss_bytes": children, "stdout": stdout.decode()}


def write_results(folder: Path, stem: str, data, text: str) -> None:
    """A result's records as `stem.json` and its table as `stem.md`, each written whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{stem}.json", json.dumps(data, indent=1, default=str).encode(), force=True)
    atomic_write(folder / f"{stem}.md", text.encode(), force=True)
