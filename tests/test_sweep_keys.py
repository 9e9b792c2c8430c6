"""The committed sweeps' records sit under the keys the current code gives their settings, so that a rerun
of `vcwc sweep` (or `vcwc report`) finds them instead of measuring them again. Needs no data: the keys hash
the settings, not the files."""

import json
from pathlib import Path

import pytest

from vcwc.bench.sweep import POINTS_FOLDER, Point, point_key

RESULTS = Path(__file__).resolve().parents[1] / "results"
SWEEP_FOLDERS = sorted(path.parent for path in RESULTS.glob("*/points.jsonl"))  # what `vcwc sweep` writes


@pytest.mark.parametrize("folder", SWEEP_FOLDERS, ids=lambda folder: folder.name)
def test_each_record_is_under_the_key_its_settings_have_now(folder):
    """If this fails after a change to recipes or to the "auto" rules: run scripts/migrate_sweep_keys.py on
    the folder where the records still hold, or rerun the sweep."""
    stale = []
    for path in sorted((folder / POINTS_FOLDER).glob("*.json")):
        record = json.loads(path.read_text())
        point, digest = Point.from_settings(record["settings"])
        if point_key(point.settings(digest)) != path.stem or record["key"] != path.stem:
            stale.append(path.name)
    assert not stale, f"{len(stale)} records of {folder.name} not under their current key, e.g. {stale[0]}"


def test_the_committed_sweeps_are_found():
    assert {"cifar10", "mobile", "text_codecs"} <= {folder.name for folder in SWEEP_FOLDERS}
