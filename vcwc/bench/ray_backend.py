"""The sweep on a Ray cluster: each point one Ray task that returns its record (docs/sweeps.md).

- Files: the driver reads each model and data file (a folder as a tar) once per run and puts the bytes
  in Ray's object store; a worker writes them once per node under $TMPDIR/vcwc-sweep-files/<sha256>/,
  with their own names, and reads them there. No shared file system is needed.
- Evaluations: the run's EvaluationCache lives in an actor, so identical weights are scored once.
- Resources: a task declares as many CPUs as the threads it uses (torch and ffmpeg), so a node runs no
  more points than it has cores; a hardware-encoder point also asks for one unit of a custom resource
  named after the encoder's device (`nvenc`, `qsv`, `vaapi`, ...), so it runs only on nodes started
  with e.g. `ray start --resources '{"nvenc": 1}'`. With no such node in the cluster it is skipped, to be
  tried again on a rerun.
- Retries: a task whose worker dies (killed, out of memory, node lost) runs again up to `retries` times,
  then its point is recorded as failed with the reason; the sweep goes on.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
import traceback
from pathlib import Path

from ..codecs import get_codec
from ..errors import InputError
from ..files import atomic_write
from .evaluation_cache import EvaluationCache
from .sweep_task import PointTask, TaskFailure, measure

INSTALL_HINT = 'pip install -e ".[ray]" (or pip install "ray>=2.40")'
FILES_FOLDER = "vcwc-sweep-files"
BUNDLE_FOLDER = "bundle"  # where a bundle (a model file and its companions) is unpacked, in its digest's folder
# Custom resources of hardware encoders: the end of the ffmpeg encoder's name (h264_nvenc -> nvenc).
DEVICE_RESOURCES = ("nvenc", "qsv", "vaapi", "v4l2m2m", "amf", "mediacodec")
DEFAULT_RETRIES = 2


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(f"--backend ray needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


def point_resources(point) -> dict[str, float]:
    """The custom resources a point's task asks for: its hardware encoder's device, if any."""
    if point.recipe is None:
        return {}
    encoder = get_codec(point.method).encoder
    device = encoder.rsplit("_", 1)[-1] if "_" in encoder else ""
    return {device: 1.0} if device in DEVICE_RESOURCES else {}


def task_options(task: PointTask, retries: int) -> dict:
    options = {"num_cpus": task.threads, "max_retries": retries, "retry_exceptions": False}
    resources = point_resources(task.point)
    return {**options, "resources": resources} if resources else options


class RayBackend:
    """Runs the tasks on the Ray cluster at `address` ("auto", "ray://host:port"), or on a Ray instance
    it starts on this machine when `address` is None (or in the Ray the process already joined)."""

    def __init__(self, address: str | None = None, retries: int = DEFAULT_RETRIES):
        self.address = address
        self.retries = retries
        self._started = False
        self._remote = None

    def connect(self):
        ray = import_ray()
        if not ray.is_initialized():
            quiet = {"logging_level": logging.ERROR, "configure_logging": True}
            try:
                if self.address is None:
                    ray.init(include_dashboard=False, **quiet)
                else:
                    ray.init(address=self.address, **quiet)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray instance"
                raise InputError(f"cannot start or reach {where}: {exc}") from None
            self._started = True
        if self._remote is None:
            self._remote = ray.remote(_run_on_worker)
        return ray

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
        self._remote = None

    def run(self, tasks, known, jobs):
        if not tasks:  # a finished sweep needs no cluster
            return
        ray = self.connect()
        available = ray.cluster_resources()
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=0)
        if tasks[0].threads > largest:  # such a task would wait forever for a node
            raise InputError(
                f"--threads {tasks[0].threads}: no node of the Ray cluster has more than {largest:g} CPUs; "
                f"give --threads {int(largest)} or fewer"
            )
        cache = ray.remote(EvaluationCache).options(num_cpus=0, max_concurrency=max(16, 2 * jobs)).remote(known)
        shipped: dict[str, tuple] = {}  # path -> (kind, sha256, object ref), put on first use
        queue, running = list(reversed(tasks)), {}
        try:
            while queue or running:
                while queue and len(running) < max(1, jobs):
                    task = queue.pop()
                    missing = [name for name in point_resources(task.point) if available.get(name, 0) < 1]
                    if missing:
                        yield task, _unschedulable(missing)
                        continue
                    files = {path: _ship(ray, path, shipped, task.point.model) for path in task.point.model.files}
                    ref = self._remote.options(**task_options(task, self.retries)).remote(task, files, cache)
                    running[ref] = task
                if not running:
                    continue
                ready, _ = ray.wait(list(running), num_returns=1)
                task = running.pop(ready[0])
                yield task, self._outcome(ray, ready[0])
                cache.release.remote(task.key)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
            ray.kill(cache)

    def _outcome(self, ray, ref):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # measure raised something it does not record itself
            cause = getattr(exc, "cause", None) or exc
            return TaskFailure(f"{type(cause).__name__}: {cause}".splitlines()[0], details=str(exc))
        except ray.exceptions.RayError as exc:  # the worker or its node died, on every attempt
            first = (str(exc).strip().splitlines() or [""])[0]
            return TaskFailure(
                f"{type(exc).__name__}: no result after {self.retries + 1} attempts (the worker or its node "
                f"died; Ray ran the task again {self.retries} times): {first}",
                details=traceback.format_exc(limit=2),
            )


def _unschedulable(missing: list[str]) -> TaskFailure:
    wanted = ", ".join(f'"{name}": 1' for name in missing)
    return TaskFailure(
        f"no node of the Ray cluster has the custom resource {', '.join(missing)} this encoder needs; "
        f"start a node with the device as `ray start ... --resources '{{{wanted}}}'` and rerun",
        status="skipped",
        retry=True,
    )


def _ship(ray, path: str, shipped: dict, spec) -> tuple:
    """One of a model spec's files in the object store, put there on first use with the companions the
    model file takes along (listing them reads a sharded model's index, so once per run)."""
    if path not in shipped:
        kind, payload = pack(path, spec.companions if path == spec.path else ())
        shipped[path] = (kind, hashlib.sha256(payload).hexdigest(), ray.put(payload))
    return shipped[path]


def pack(path: str, companions: tuple[str, ...] = ()) -> tuple[str, bytes]:
    """("file", its bytes); ("bundle", a tar of the file and the `companions` beside it, which must travel
    with it: a Hugging Face model's config.json and tokenizer.json); or ("folder", a tar of it). Tars are
    uncompressed, with fixed times and owners."""
    source = Path(path)
    try:
        if not source.is_dir() and not companions:
            return "file", source.read_bytes()
        buffer = io.BytesIO()
        items = [source, *(source.parent / name for name in companions)] if companions else sorted(source.rglob("*"))
        base = source.parent if companions else source
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for item in items:
                info = archive.gettarinfo(str(item), arcname=str(item.relative_to(base)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if item.is_file():
                    with open(item, "rb") as handle:
                        archive.addfile(info, handle)
                elif item.is_dir():
                    archive.addfile(info)
        return "bundle" if companions else "folder", buffer.getvalue()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read to send to the Ray workers ({exc.strerror or exc})") from None


def materialize(path: str, kind: str, digest: str, payload, root: Path | None = None) -> str:
    """The local copy of a shipped file, bundle or folder, written once per node; `payload` gives its bytes.
    A bundle's file is returned in the folder its companions were unpacked into."""
    folder = (root or Path(tempfile.gettempdir()) / FILES_FOLDER) / digest[:32]
    name = Path(path).name or "data"
    target = folder / (BUNDLE_FOLDER if kind == "bundle" else name)
    local = target / name if kind == "bundle" else target
    if target.exists():
        return str(local)
    folder.mkdir(parents=True, exist_ok=True)
    data = payload() if callable(payload) else payload
    if kind == "file":
        atomic_write(target, data, force=True)
        return str(target)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=folder))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
            # The data filter refuses absolute paths and links out of the folder (Python >= 3.10.12).
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(scratch, **safe)
        os.replace(scratch, target)
    except OSError:
        if not target.is_dir():  # another worker of this node did not win the race either
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return str(local)


class _ActorCache:
    """The EvaluationCache actor seen as the object `measure` expects."""

    def __init__(self, ray, actor):
        self._ray, self._actor = ray, actor

    def claim(self, key: str, owner: str):
        return self._ray.get(self._actor.claim.remote(key, owner))

    def store(self, key: str, owner: str, score: dict) -> None:
        self._ray.get(self._actor.store.remote(key, owner, score))

    def release(self, owner: str) -> None:
        self._ray.get(self._actor.release.remote(owner))


def _run_on_worker(task: PointTask, files: dict[str, tuple], cache):
    import ray

    local = {
        path: materialize(path, kind, digest, lambda ref=ref: ray.get(ref))
        for path, (kind, digest, ref) in files.items()
    }
    return measure(task, _ActorCache(ray, cache), local)
