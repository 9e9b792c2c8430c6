"""One sweep point as a task: measure it wherever it runs and return its record; the driver writes it.

A task carries everything a worker needs but the files (vcwc.bench.ray_backend ships those): the point,
its key and settings, and the threads it may use. `measure` pins torch's threads, BLAS's and ffmpeg's
jobs to that number, so a point gives the same bytes, sizes and scores on any backend, and never raises:
a failure is part of the record.
"""

from __future__ import annotations

import platform
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..codecs import get_codec
from ..errors import InputError, NNCodecUnavailable, VcwcError
from ..version import __version__
from .experiment import ModelUnderTest

# Record fields that differ between two runs of the same point: timings and the machine that ran it.
VARYING_FIELDS = frozenset({"seconds", "encode_seconds", "decode_seconds", "host", "cached_evaluation"})


@dataclass(frozen=True)
class PointTask:
    point: object  # a vcwc.bench.sweep.Point
    key: str
    settings: dict
    threads: int  # torch threads and ffmpeg jobs of this point; a Ray task declares as many CPUs
    ffmpeg_path: str | None = None
    nncodec_python: str | None = None
    run: str = ""  # which Sweep.run call: evaluations known in memory are kept within one run
    vcwc_version: str = __version__  # the driver's: a worker with another version refuses the point


@dataclass
class PointResult:
    record: dict
    evaluations: dict[str, dict] = field(default_factory=dict)  # scores this task computed, by cache key


@dataclass(frozen=True)
class TaskFailure:
    """A task that returned no record (its worker died, or the backend could not run it)."""

    reason: str
    status: str = "failed"
    retry: bool = False  # for "skipped": measurable later (a node with the device may join)
    details: str = ""


def base_record(task: PointTask) -> dict:
    point = task.point
    return {
        "key": task.key,
        "settings": task.settings,
        "label": point.label(),
        "model": point.model.name,
        "arch": point.model.arch,
        "method": point.method,
        "granularity": point.granularity,
        "qp": point.qp,
        "eval_limit": point.eval_limit,
    }


def unfinished_record(task: PointTask, failure: TaskFailure) -> dict:
    record = {**base_record(task), "vcwc_version": task.vcwc_version, "threads": task.threads}
    if failure.status == "skipped":
        return {**record, "status": "skipped", "reason": failure.reason, "retry": failure.retry, "seconds": 0.0}
    return {**record, "status": "failed", "error": failure.reason, "traceback": failure.details, "seconds": 0.0}


def measure(task: PointTask, evaluations, files: dict[str, str] | None = None) -> PointResult:
    """Measure one point. `evaluations` is the run's EvaluationCache (or a proxy of it); `files` maps the
    model and data paths of the point to local copies (default: read them where they are)."""
    import torch

    torch.set_num_threads(task.threads)
    _limit_native_threads(task.threads)
    point = task.point
    record = {
        **base_record(task),
        "vcwc_version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "host": platform.node(),
        "threads": task.threads,
    }
    start = time.perf_counter()
    subject = None
    try:
        if task.vcwc_version != __version__:
            raise InputError(
                f"this worker runs vcwc {__version__} but the sweep's driver {task.vcwc_version}: "
                f"install the same version on every node"
            )
        _check_measurable(point, task.nncodec_python)
        subject = _subject(point.model, point.eval_limit, files or {})
        subject.begin(task, evaluations)
        if point.is_baseline:
            result = subject.run_baseline(point.method)
        elif point.is_nncodec:
            result = subject.run_nncodec(point.nncodec_qp, python=task.nncodec_python)
        else:
            result = subject.run_codec(point.recipe, ffmpeg_path=task.ffmpeg_path, jobs=task.threads)
        record.update(status="ok", **subject.scoring.original_fields(), **result)
    except _Skip as reason:
        record.update(status="skipped", reason=str(reason), retry=reason.retry)
    except (VcwcError, RuntimeError, ValueError, OSError) as exc:
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=6))
    finally:
        evaluations.release(task.key)
    record["seconds"] = time.perf_counter() - start
    return PointResult(record, dict(subject.new_evaluations) if subject is not None else {})


def _limit_native_threads(threads: int) -> None:
    """BLAS and OpenMP pools too: numpy's dot products (the SNR stored in a file's metadata) add up in an
    order that depends on BLAS's threads. threadpoolctl comes with the ray extra; without it they keep
    their default (the machine's cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads)


def _check_measurable(point, nncodec_python: str | None) -> None:
    if point.is_nncodec:
        from .nncodec import find_python

        try:
            find_python(nncodec_python)
        except NNCodecUnavailable as exc:
            raise _Skip(str(exc), retry=True) from None
    elif not point.is_baseline:
        codec = get_codec(point.method)
        qp = point.recipe.codec.qp
        if qp is None and not codec.supports_lossless:
            raise _Skip(f"{point.method} has no lossless mode")
        low, high = codec.qp_range
        if qp is not None and not low <= qp <= high:
            raise _Skip(f"QP {qp} is outside {point.method}'s range {low}..{high}")


class _Skip(Exception):
    def __init__(self, reason: str, retry: bool = False):
        super().__init__(reason)
        self.retry = retry  # the point becomes measurable once something is installed: try it on rerun


class _SweptModel(ModelUnderTest):
    """A model under test whose evaluation store is the run's EvaluationCache instead of a folder."""

    run = None
    evaluations = None
    owner = ""
    new_evaluations: dict[str, dict] = {}

    def begin(self, task: PointTask, evaluations) -> None:
        if self.run != task.run:  # a new run: forget scores a forced rerun means to recompute
            self._scores = {key: score for key, score in self._scores.items() if score is self.original}
            self.run = task.run
        self.evaluations, self.owner, self.new_evaluations = evaluations, task.key, {}

    def _cache_key(self, weights_key: str) -> str:
        # The name ModelUnderTest gives the score's file in an evaluation folder: OUT/evaluations/<key>.
        return self._store_path(weights_key).name

    def _stored_score(self, weights_key: str):
        found = self.evaluations.claim(self._cache_key(weights_key), self.owner)
        return None if found is None else self.scoring.result(found)

    def _store_score(self, weights_key: str, result) -> None:
        key, score = self._cache_key(weights_key), result.to_dict()
        self.evaluations.store(key, self.owner, score)
        self.new_evaluations[key] = score


_SUBJECTS: dict = {}  # per process: (model spec, eval limit) -> _SweptModel


def _subject(spec, limit: int | None, files: dict[str, str]) -> _SweptModel:
    from ..io import load_model

    key = (spec, limit)
    if key not in _SUBJECTS:
        _SUBJECTS.clear()  # keep one model in memory per process
        dataset = _evaluation_data(spec, limit or spec.limit, files)
        loaded = load_model(files.get(spec.path, spec.path))
        _SUBJECTS[key] = _SweptModel(
            spec.name, loaded, spec.arch, dataset, evaluation_store=Path("evaluations"), input_shape=spec.input_shape
        )
    return _SUBJECTS[key]


def _evaluation_data(spec, limit: int | None, files: dict[str, str]):
    """Labelled images (.npz or class folders), or a text with its tokenizer (any other file), named by the
    driver's path wherever the copy lies: the evaluation keys hash the data's name."""
    from ..eval.datasets import load_dataset
    from ..eval.text import load_tokenizer, read_text, tokenizer_beside
    from .scoring import TextData

    local = files.get(spec.data, spec.data)
    if spec.is_image_data:
        return replace(load_dataset(local, limit=limit), source=str(Path(spec.data)))
    model = files.get(spec.path, spec.path)
    tokenizer = files.get(spec.tokenizer, spec.tokenizer) if spec.tokenizer else tokenizer_beside([model])
    return TextData(read_text(local), load_tokenizer(tokenizer), str(Path(spec.data)), limit)
