"""Where a sweep's points run. A backend takes the tasks the runner planned (vcwc.bench.sweep_task) and
yields each with its result as it arrives; the runner writes the records. `local` runs them in this
process (-j 1) or a process pool; `ray` on a Ray cluster (vcwc.bench.ray_backend, an optional extra).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing.managers import BaseManager
from typing import Protocol

from ..errors import InputError
from .evaluation_cache import EvaluationCache
from .names import BACKENDS
from .sweep_task import PointResult, PointTask, TaskFailure, measure


class Backend(Protocol):
    def run(
        self, tasks: list[PointTask], known: dict[str, dict], jobs: int
    ) -> Iterator[tuple[PointTask, PointResult | TaskFailure]]:
        """Run `tasks`, at most `jobs` at once, with the evaluations `known` so far; yield results as they come."""

    def close(self) -> None:
        """Let go of what the backend started."""


class LocalBackend:
    """Today's sweep: the driver's own process, or a pool of `jobs` processes on this machine."""

    def run(self, tasks, known, jobs):
        if jobs <= 1:
            cache = EvaluationCache(known)
            for task in tasks:
                yield task, _guarded(task, cache)
            return
        with _CacheServer() as server:
            cache = server.EvaluationCache(known)
            pool = ProcessPoolExecutor(max_workers=jobs)
            try:
                futures = {pool.submit(measure, task, cache): task for task in tasks}
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        yield task, future.result()
                    except Exception as exc:  # the worker died (BrokenProcessPool) or the task raised
                        yield task, TaskFailure(f"{type(exc).__name__}: {exc}", details=traceback.format_exc(limit=6))
                        cache.release(task.key)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pass


def _guarded(task: PointTask, cache) -> PointResult | TaskFailure:
    try:
        return measure(task, cache)
    except Exception as exc:  # measure records expected failures itself; this is anything else
        return TaskFailure(f"{type(exc).__name__}: {exc}", details=traceback.format_exc(limit=6))


class _CacheServer(BaseManager):
    """Holds the run's EvaluationCache in a process of its own; the pool's workers call it through proxies."""


_CacheServer.register("EvaluationCache", EvaluationCache)


def make_backend(name: str, address: str | None = None) -> Backend:
    """A backend by its command-line name; `address` is the Ray cluster's (default: start one here)."""
    if name == "local":
        if address is not None:
            raise InputError("--ray-address needs --backend ray")
        return LocalBackend()
    if name == "ray":
        from .ray_backend import RayBackend, import_ray

        import_ray()  # fail now, with the install command, rather than after planning
        return RayBackend(address)
    raise InputError(f"--backend: {name!r} is not one of {', '.join(BACKENDS)}")
