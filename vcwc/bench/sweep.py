"""`vcwc sweep`: many models x codecs x quantization granularities x QPs, each point its own JSON record.

A point is keyed by a hash of its full settings: the model file's digest, the recipe (vcwc.recipe) for
a codec point (with the version of the rules its "auto" settings follow, vcwc.recipe.AUTO_RULES), the
method for a baseline, and the evaluation subset. A rerun skips what is finished,
`--force` recomputes, and new recipe settings only add keys. Points run as tasks on a backend (this
machine's processes, or a Ray cluster: docs/sweeps.md) that return their records; the runner writes each
one atomically as it arrives. Reports and plots are rebuilt from the records alone (`vcwc report DIR`).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..codecs import get_codec
from ..errors import InputError
from ..files import atomic_write
from ..io import model_files
from ..recipe import AUTO_RULES, CodecSettings, QuantizerSettings, Recipe
from .backends import Backend, LocalBackend
from .experiment import recipe_fields
from .model_spec import ModelSpec
from .names import BASELINES, CORRECTIONS, KNEE_ABOVE, KNEE_BELOW, NNCODEC, STEP_QP_LADDER
from .scoring import agreement_of
from .sweep_task import PointTask, TaskFailure, unfinished_record

POINTS_FOLDER = "points"
EVALS_FOLDER = "evaluations"


def sweep_recipe(codec: str, granularity: str, qp: int | None, correction: str = "none") -> Recipe:
    """The recipe of a sweep point: int8 scales per tensor or channel with the codec at `qp`, or ("step")
    one fixed step 2^(qp/4) for every tensor with the codec lossless on the symbols."""
    if granularity == "step":
        return Recipe(codec=CodecSettings(codec), quantizer=QuantizerSettings(step_qp=qp), **CORRECTIONS[correction])
    return Recipe(codec=CodecSettings(codec, qp), quantizer=QuantizerSettings(granularity), **CORRECTIONS[correction])


@dataclass(frozen=True)
class Point:
    """One measurement: a model with a recipe, or with a baseline method (NNCodec at `nncodec_qp`)."""

    model: ModelSpec
    method: str  # a codec name, a baseline such as "int8_zstd_per_tensor", or "nncodec"
    recipe: Recipe | None = None  # codec points
    nncodec_qp: int | None = None
    eval_limit: int | None = None  # evaluate on a class-balanced subset (screening), None: model.limit

    @property
    def fields(self) -> dict:
        if self.recipe is not None:
            return recipe_fields(self.recipe)
        granularity = "per_channel" if self.method.endswith("per_channel") else "per_tensor"
        return {"method": self.method, "granularity": granularity, "qp": self.nncodec_qp, "correction": None}

    @property
    def granularity(self) -> str:
        return self.fields["granularity"]

    @property
    def qp(self) -> int | None:
        return self.fields["qp"]

    @property
    def correction(self) -> str:
        return self.fields["correction"] or "none"

    @property
    def is_baseline(self) -> bool:
        return self.method in BASELINES

    @property
    def is_nncodec(self) -> bool:
        return self.method == NNCODEC

    def with_limit(self, eval_limit: int | None) -> Point:
        return Point(self.model, self.method, self.recipe, self.nncodec_qp, eval_limit)

    @classmethod
    def from_settings(cls, settings: dict) -> tuple[Point, str]:
        """The point a record's settings describe (`settings`'s inverse), and the model file's digest."""
        model = dict(settings["model"])
        digest = model.pop("sha256")
        spec, limit = ModelSpec(**model), settings["eval_limit"]
        if "recipe" in settings:
            recipe = Recipe.from_dict(settings["recipe"])
            return cls(spec, recipe.codec.name, recipe, eval_limit=limit), digest
        return cls(spec, settings["method"], nncodec_qp=settings["qp"], eval_limit=limit), digest

    def settings(self, model_digest: str) -> dict:
        # Fields added since the first sweeps are left out where unset, so earlier points keep their keys.
        model = {
            key: value
            for key, value in asdict(self.model).items()
            if value is not None or key not in ("input_shape", "tokenizer")
        }
        settings = {"model": {**model, "sha256": model_digest}, "eval_limit": self.eval_limit}
        if self.recipe is not None:
            if self.recipe.chooses_automatically:
                settings["auto_rules"] = AUTO_RULES
            return {**settings, "recipe": self.recipe.to_dict()}
        return {**settings, "method": self.method, "qp": self.nncodec_qp}

    @property
    def recipe_name(self) -> str | None:
        """The named recipe (or recipe file's name) a point runs, None for the granularity grid's recipes."""
        return self.recipe.name if self.recipe is not None else None

    def label(self) -> str:
        qp = "" if self.is_baseline else (" lossless" if self.qp is None else f" qp={self.qp}")
        subset = f" (screen {self.eval_limit})" if self.eval_limit else ""
        if self.recipe_name:
            return f"{self.model.name} {self.method} recipe {self.recipe_name}{qp}{subset}"
        if self.granularity == "step":
            qp = f" qp={self.qp} (codec lossless)"
        if self.correction != "none":
            qp += f" + {self.correction} correction"
        return f"{self.model.name} {self.method} {self.granularity}{qp}{subset}"


def point_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def file_digest(path: str) -> str:
    """The sha256 of a model's bytes: its file's, or a sharded model's index and shards' in order."""
    digest = hashlib.sha256()
    try:
        for file in model_files(path):
            with open(file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    except OSError as exc:
        raise InputError(f"model file {path!r} cannot be read ({exc.strerror})") from None
    return digest.hexdigest()


def plan_points(
    models: list[ModelSpec],
    codecs: list[str],
    granularities: list[str],
    qps: dict[str, list[int | None]] | None = None,
    baselines: tuple[str, ...] = BASELINES,
    eval_limit: int | None = None,
    nncodec_qps: list[int] | None = None,
    step_qps: list[int] | None = None,
    corrections: tuple[str, ...] = ("none",),
    recipes: tuple[Recipe, ...] = (),
    recipe_codecs: list[str] | None = None,
) -> list[Point]:
    """Every point of the grid. `qps` maps a codec to its QPs (None = lossless); default: its ladder.

    The "step" granularity takes `step_qps` (default STEP_QP_LADDER) instead, for every codec with a
    lossless mode. Every codec point is planned once per entry of `corrections` (CORRECTIONS).
    NNCodec points (its own QP scale) are planned only when `nncodec_qps` is given. Each of `recipes`
    (named or from files) runs as it is, with each of `recipe_codecs` (default: its own codec) and, where
    it has a fixed step, at each of `step_qps`.
    """
    unknown = [name for name in corrections if name not in CORRECTIONS]
    if unknown:
        raise InputError(f"unknown correction {', '.join(map(repr, unknown))}; known: {', '.join(CORRECTIONS)}")
    points = []
    for model in models:
        points += [Point(model, name, eval_limit=eval_limit) for name in baselines]
        points += [Point(model, NNCODEC, nncodec_qp=qp, eval_limit=eval_limit) for qp in nncodec_qps or ()]
        for codec in codecs:
            spec = get_codec(codec)
            ladder = (qps or {}).get(codec) or [None, *spec.qp_ladder]
            for granularity in granularities:
                if granularity == "step" and not spec.supports_lossless:
                    continue
                values = step_qps or STEP_QP_LADDER if granularity == "step" else ladder
                points += [
                    Point(model, codec, sweep_recipe(codec, granularity, qp, correction), eval_limit=eval_limit)
                    for correction in corrections
                    for qp in values
                ]
        points += [
            Point(model, recipe.codec.name, recipe, eval_limit=eval_limit)
            for recipe in recipe_points(recipes, recipe_codecs, step_qps)
        ]
    return points


def recipe_points(recipes: tuple[Recipe, ...], codecs: list[str] | None, step_qps: list[int] | None) -> list[Recipe]:
    """Each recipe with each codec (its own by default; a named recipe's preset stays with its own codec,
    as `vcwc compress --codec` does), at each step QP where it has a fixed step."""
    planned = []
    for recipe in recipes:
        for codec in codecs or [recipe.codec.name]:
            get_codec(codec)
            swapped = recipe
            if codec != recipe.codec.name:
                swapped = recipe.with_changes(**{"codec.name": codec, "codec.preset": None})
            if recipe.quantizer.step_qp is None:
                planned.append(swapped)
            else:
                planned += [swapped.with_changes(**{"quantizer.step_qp": qp}) for qp in step_qps or STEP_QP_LADDER]
    return planned


@dataclass
class Sweep:
    """Runs points on a backend (vcwc.bench.backends: this machine's processes, or a Ray cluster) and
    writes each record as it arrives, so an interrupted sweep resumes where it stopped."""

    out: Path
    force: bool = False
    jobs: int = 1  # points at once
    progress: bool = True
    ffmpeg_path: str | None = None
    nncodec_python: str | None = None  # default: $VCWC_NNCODEC_PYTHON, else the repository's .venv-nncodec
    threads: int | None = None  # per point (torch, ffmpeg); default: this machine's CPUs / jobs
    backend: Backend | None = None  # default: LocalBackend()
    evaluated: int = 0  # evaluations the last run computed (identical weights are scored once)
    _digests: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.out = Path(self.out)
        if self.backend is None:
            self.backend = LocalBackend()
        if self.threads is None:
            self.threads = max(1, (os.cpu_count() or 1) // max(1, self.jobs))
        if self.threads < 1 or self.jobs < 1:
            raise InputError(f"jobs and threads must be at least 1, got {self.jobs} and {self.threads}")

    def key(self, point: Point) -> str:
        if point.model.path not in self._digests:
            self._digests[point.model.path] = file_digest(point.model.path)
        return point_key(point.settings(self._digests[point.model.path]))

    def record_path(self, point: Point) -> Path:
        return self.out / POINTS_FOLDER / f"{self.key(point)}.json"

    def pending(self, points: list[Point]) -> list[Point]:
        """Points without a finished record (failed ones are tried again)."""
        if self.force:
            return list(points)
        return [p for p in points if not _finished(self.record_path(p))]

    def run(self, points: list[Point]) -> list[dict]:
        (self.out / POINTS_FOLDER).mkdir(parents=True, exist_ok=True)
        (self.out / EVALS_FOLDER).mkdir(parents=True, exist_ok=True)
        run = uuid.uuid4().hex
        tasks = [
            PointTask(
                p,
                self.key(p),
                p.settings(self._digests[p.model.path]),
                self.threads,
                self.ffmpeg_path,
                self.nncodec_python,
                run,
            )
            for p in self.pending(points)
        ]
        # One model per worker at a time keeps its loaded copy and reference predictions reusable.
        tasks.sort(key=lambda task: task.point.model.path)
        known = {path.name: json.loads(path.read_text()) for path in (self.out / EVALS_FOLDER).glob("*.json")}
        self.evaluated = 0
        bar = tqdm(total=len(tasks), desc="sweep", unit="point", disable=None if self.progress else True)
        for task, result in self.backend.run(tasks, known, self.jobs):
            if isinstance(result, TaskFailure):
                record, evaluations = unfinished_record(task, result), {}
            else:
                record, evaluations = result.record, result.evaluations
            for name, score in evaluations.items():  # before the record: a finished point's scores are kept
                atomic_write(self.out / EVALS_FOLDER / name, json.dumps(score).encode(), force=True)
            self.evaluated += len(evaluations)
            atomic_write(
                self.out / POINTS_FOLDER / f"{task.key}.json",
                json.dumps(record, indent=1, default=_json_default, allow_nan=True).encode(),
                force=True,
            )
            bar.update()
        bar.close()
        return [json.loads(self.record_path(p).read_text()) for p in points]


def _finished(path: Path) -> bool:
    """Finished: measured, or skipped for good (not for a missing tool that may be installed later)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return record.get("status") == "ok" or (record.get("status") == "skipped" and not record.get("retry"))


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def load_records(out: Path) -> list[dict]:
    """Every point record under a sweep folder, in a stable order."""
    folder = Path(out) / POINTS_FOLDER
    if not folder.is_dir():
        raise InputError(f"{out}: not a sweep folder (no {POINTS_FOLDER}/)")
    records = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    baseline_order = {name: index for index, name in enumerate(BASELINES)}
    return sorted(
        records,
        key=lambda r: (
            r["model"],
            r.get("eval_limit") or 0,
            r["method"] not in baseline_order,
            baseline_order.get(r["method"], 0),
            r["method"],
            r["granularity"],
            -1 if r["qp"] is None else r["qp"],
            r.get("correction") or "",
            r["key"],
        ),
    )


def knee_points(
    screened: list[dict], points: list[Point], threshold: float = 99.0, below: int = KNEE_BELOW, above: int = KNEE_ABOVE
) -> list[Point]:
    """From screening records, the full-data points around each series' knee.

    A series is one model, codec, granularity, correction and recipe. Its knee is the first QP (in
    increasing order) whose agreement with the original on the screening subset (scoring.agreement_of)
    falls below `threshold`; we keep `below` QPs before it and `above` from it on, plus lossless.
    """
    agreement = {
        (r["model"], r["method"], r["granularity"], r["qp"], r.get("correction"), r.get("recipe_name")): agreement_of(r)
        for r in screened
        if r.get("status") == "ok"
    }
    series: dict[tuple, list[Point]] = {}
    for point in points:
        if not point.is_baseline:
            key = (point.model, point.method, point.granularity, point.correction, point.recipe_name)
            series.setdefault(key, []).append(point)
    chosen = []
    for members in series.values():
        lossless = [p for p in members if p.qp is None]
        lossy = sorted((p for p in members if p.qp is not None), key=lambda p: p.qp)
        scores = [
            agreement.get(
                (
                    p.model.name,
                    p.method,
                    p.granularity,
                    p.qp,
                    None if p.correction == "none" else p.correction,
                    p.recipe_name,
                )
            )
            for p in lossy
        ]
        knee = next((i for i, value in enumerate(scores) if value is not None and value < threshold), len(lossy))
        window = lossy[max(0, knee - below) : knee + above]
        chosen += [p.with_limit(None) for p in lossless + window]
    return chosen
