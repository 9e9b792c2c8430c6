#!/usr/bin/env bash
# Build the separate Python environment that runs the NNCodec baseline (`vcwc sweep --nncodec`).
#
# NNCodec 2.1.3 declares numpy<2 and torchvision, so it cannot share vcwc's environment, and torchvision
# does not install here: we install NNCodec without its declared dependencies and add only what its
# `nncodec.nn` import path needs. The worker (vcwc/bench/nncodec_worker.py) puts a stand-in torchvision module in
# place when the real one is missing, so nothing else is patched. Safe to rerun: finished steps are skipped.
#
# Usage: scripts/setup_nncodec.sh [VENV_DIR]
#   (default: $XDG_DATA_HOME/vcwc/nncodec-venv, i.e. ~/.local/share/vcwc/nncodec-venv, where vcwc looks for it;
#   elsewhere, point $VCWC_NNCODEC_PYTHON at VENV_DIR/bin/python)
# Environment: PYTHON, the interpreter to build the venv from (default python3; torch 2.13.0 must have a
# wheel for it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-${XDG_DATA_HOME:-$HOME/.local/share}/vcwc/nncodec-venv}"
mkdir -p "$(dirname "$venv")"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
py="$(cd "$venv" && pwd)/bin/python"
pip=("$py" -m pip install --quiet --disable-pip-version-check)

if "$py" -c 'import nncodec.extensions.deepCABAC, numpy, torch, cv2, sklearn, pandas, h5py, tqdm' 2>/dev/null \
    && [ "$("$py" -c 'import importlib.metadata as m; print(m.version("nncodec"))')" = "2.1.3" ]; then
    echo "NNCodec environment already set up" >&2
else
    # The CPU build of torch first: an unpinned torch would pull the multi-GB CUDA build.
    "${pip[@]}" --upgrade pip
    "${pip[@]}" torch==2.13.0
    # What nncodec.nn imports at import time (nncodec's own list adds torchvision, Click, ptflops and
    # torchmetrics, which the encode/decode path does not use); headless OpenCV needs no X or GL libraries.
    "${pip[@]}" "numpy<2" scikit-learn pandas h5py tqdm opencv-python-headless
    # Builds the deepCABAC C++ extension from source (a few minutes on 2 cores).
    "${pip[@]}" --no-deps nncodec==2.1.3
fi

# Check the import the worker does, with the same torchvision stand-in.
"$py" -I "vcwc/bench/nncodec_worker.py" --check >&2
echo "$py"
