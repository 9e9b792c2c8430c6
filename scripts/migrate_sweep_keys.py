"""Move a sweep folder's point records to their current keys, without rerunning anything.

Records written before recipes were keyed by a hash of (model, method, granularity, QP, options); now a
codec point's key hashes its recipe (vcwc.bench.sweep.Point.settings), so a recipe that gains a setting
changes every key. This reads each record's settings (old style, or a recipe that lacks newer settings,
which take their defaults: what the point ran with), rebuilds the point, and renames the record to its key
with the current settings; the measured fields are kept as they are. Then the folder's tables and plots
are rebuilt from the records. Records already under their current key are left alone. A point that asks
for "auto" settings is keyed with the version of the rules they follow (vcwc.recipe.AUTO_RULES), which a
record takes as it is moved: move only records measured under the current rules, and rerun the others.

    python scripts/migrate_sweep_keys.py results/cifar10 results/mobile results/text_codecs
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
    """The point a record's settings describe, and the model file's digest they hold."""
    if "recipe" in settings or settings["method"] in BASELINES or settings["method"] == "nncodec":
        return Point.from_settings(settings)
    model = dict(settings["model"])
    digest = model.pop("sha256")
    correction = settings.get("options", {}).get("correction", "none")
    recipe = sweep_recipe(settings["method"], settings["granularity"], settings["qp"], correction)
    return Point(ModelSpec(**model), settings["method"], recipe, eval_limit=settings["eval_limit"]), digest


def migrate(folder: Path) -> int:
    moved = 0
    for path in sorted((folder / POINTS_FOLDER).glob("*.json")):
        record = json.loads(path.read_text())
        point, digest = point_of(record["settings"])
        settings = point.settings(digest)
        key = point_key(settings)
        record.update(key=key, settings=settings)
        if point.recipe is not None:
            record["recipe"] = point.recipe.to_dict()
        if path.name == f"{key}.json" and record == json.loads(path.read_text()):
            continue
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
