"""Move a sweep folder's point records to the recipe-based keys, without rerunning anything.

Records written before recipes were keyed by a hash of (model, method, granularity, QP, options). Now a
codec point's key hashes its recipe (vcwc.bench.sweep.Point.settings). This reads each record's old
settings, rebuilds the point they describe, and renames the record to its new key with the new settings;
the measured fields are kept as they are. Then the folder's tables and plots are rebuilt from the records.
Run once per folder; records already under their new key are left alone.

    python scripts/migrate_sweep_keys.py results/cifar10 results/mobile
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vcwc.bench.names import BASELINES
from vcwc.bench.sweep import POINTS_FOLDER, ModelSpec, Point, point_key, sweep_recipe
from vcwc.bench.sweep_report import write_report
from vcwc.files import atomic_write


def point_of(settings: dict) -> tuple[Point, str]:
    """The point an old record's settings describe, and the model file's digest they hold."""
    model = dict(settings["model"])
    digest = model.pop("sha256")
    spec = ModelSpec(**model)
    if "recipe" in settings:
        raise ValueError("already migrated")
    method, limit = settings["method"], settings["eval_limit"]
    if method in BASELINES:
        return Point(spec, method, eval_limit=limit), digest
    if method == "nncodec":
        return Point(spec, method, nncodec_qp=settings["qp"], eval_limit=limit), digest
    correction = settings.get("options", {}).get("correction", "none")
    return Point(
        spec, method, sweep_recipe(method, settings["granularity"], settings["qp"], correction), eval_limit=limit
    ), digest


def migrate(folder: Path) -> int:
    moved = 0
    for path in sorted((folder / POINTS_FOLDER).glob("*.json")):
        record = json.loads(path.read_text())
        try:
            point, digest = point_of(record["settings"])
        except ValueError:
            continue
        settings = point.settings(digest)
        key = point_key(settings)
        record.update(key=key, settings=settings)
        if point.recipe is not None:
            record["recipe"] = point.recipe.to_dict()
        atomic_write(path.with_name(f"{key}.json"), json.dumps(record, indent=1).encode(), force=True)
        if path.name != f"{key}.json":
            path.unlink()
        moved += 1
    write_report(folder)
    return moved


def main() -> int:
    for folder in map(Path, sys.argv[1:]):
        print(f"{folder}: {migrate(folder)} records moved to recipe keys", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
