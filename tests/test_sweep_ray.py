"""The sweep on a local Ray instance of 2 CPUs: the same records as the local backend, resume after an
interruption, killed workers retried a bounded number of times, failures recorded and the sweep going on.

CI installs the ray extra, so there these tests run; elsewhere they skip without it.
"""

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from vcwc.bench.ray_backend import RayBackend
from vcwc.bench.sweep import ModelSpec, Sweep, plan_points
from vcwc.bench.sweep_task import VARYING_FIELDS
from vcwc.errors import InputError
from vcwc.recipe import RECIPES

if os.environ.get("CI"):
    import ray  # CI installs the ray extra: never skip there
else:
    ray = pytest.importorskip("ray", reason='the ray extra is not installed: pip install -e ".[ray]"')

pytestmark = pytest.mark.slow  # real codecs or models end to end


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module; its address, for a second driver to join."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, configure_logging=True)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def spec(models_dir):
    return ModelSpec(
        "digits", str(models_dir / "digits_resnet.safetensors"), "digits_resnet", str(models_dir / "digits_test.npz")
    )


def comparable(record: dict) -> dict:
    return {name: value for name, value in record.items() if name not in VARYING_FIELDS}


def test_ray_writes_the_records_the_local_backend_writes(tmp_path, spec, cluster):
    points = plan_points(
        [spec],
        ["x264", "svtav1"],
        ["per_tensor", "step"],
        {"x264": [None, 30], "svtav1": [None, 40]},
        baselines=("fp32", "int8_zstd_per_tensor"),
        step_qps=[-16],
    )
    local = Sweep(tmp_path / "local", jobs=2, threads=1, progress=False)
    on_ray = Sweep(tmp_path / "ray", jobs=2, threads=1, progress=False, backend=RayBackend())
    expected, records = local.run(points), on_ray.run(points)
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert [comparable(r) for r in records] == [comparable(r) for r in expected]
    # Identical weights are scored once on either backend: the same evaluations, each computed once.
    evaluations = sorted(p.name for p in (tmp_path / "ray" / "evaluations").iterdir())
    assert evaluations == sorted(p.name for p in (tmp_path / "local" / "evaluations").iterdir())
    assert on_ray.evaluated == local.evaluated == len(evaluations) < len(points)
    assert on_ray.run(points) == records and on_ray.evaluated == 0  # finished: nothing reruns


def test_a_text_model_travels_with_its_architecture_and_tokenizer(tmp_path, llama_folder, text_file, cluster):
    """No --arch and no tokenizer given: the worker's copy of the model needs the config.json and
    tokenizer.json of its Hugging Face folder, and gets the records the local backend writes."""
    text = ModelSpec("llama", str(llama_folder / "model.safetensors"), None, str(text_file), limit=2)
    assert text.companions == ("config.json", "tokenizer.json")
    points = plan_points([text], [], [], baselines=("int8_per_tensor",), recipes=(RECIPES["smallest"],), step_qps=[-20])
    local = Sweep(tmp_path / "local", jobs=1, threads=1, progress=False)
    on_ray = Sweep(tmp_path / "ray", jobs=2, threads=1, progress=False, backend=RayBackend())
    expected, records = local.run(points), on_ray.run(points)
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert [comparable(r) for r in records] == [comparable(r) for r in expected]
    assert (
        records[1]["task"] == "language_model"
        and records[1]["recipe"]["quantizer"]["allocation"] == "sensitivity_columns"
    )


def test_an_interrupted_ray_sweep_resumes_losing_and_repeating_nothing(tmp_path, spec, cluster):
    qps = [None, 20, 24, 28, 32, 36]
    (spec,) = ModelSpec.parse(f"{spec.path}:digits_resnet:{spec.data}")  # as the command line names it
    points = plan_points([spec], ["x264", "x265"], ["per_tensor"], {"x264": qps, "x265": qps}, baselines=())
    out = tmp_path / "s"
    command = [
        sys.executable,
        "-m",
        "vcwc",
        "sweep",
        "--models",
        f"{spec.path}:digits_resnet:{spec.data}",
        "--codecs",
        "x264,x265",
        "--qps",
        ",".join("lossless" if qp is None else str(qp) for qp in qps),
        "--granularity",
        "per_tensor",
        "--baselines",
        "none",
        "--out",
        str(out),
        "-j",
        "2",
        "--threads",
        "1",
        "--backend",
        "ray",
        "--ray-address",
        cluster,
    ]
    log = tmp_path / "driver.log"
    with open(log, "w") as stderr:
        driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while len(list((out / "points").glob("*.json"))) < 2 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)  # no chance to clean up: only whole records may be left
    driver.wait()
    written = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "points").glob("*.json")}
    assert 2 <= len(written) < len(points), log.read_text()[-3000:]
    assert all(json.loads(content)["status"] == "ok" for _, content in written.values())  # whole records only
    sweep = Sweep(out, jobs=2, threads=1, progress=False, backend=RayBackend())
    todo = sweep.pending(points)
    assert len(todo) == len(points) - len(written)
    records = sweep.run(points)
    assert all(r["status"] == "ok" for r in records) and len({r["key"] for r in records}) == len(points)
    assert {
        p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "points").glob("*.json") if p.name in written
    } == written
    assert sweep.pending(points) == []


def killing_ffmpeg(tmp_path, kills: int):
    """An ffmpeg that kills the worker running it (its parent) on its first `kills` x265 runs."""
    import imageio_ffmpeg

    script = tmp_path / "ffmpeg"
    counter = tmp_path / "kills"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in *libx265*)\n'
        f'  done=$(cat "{counter}" 2>/dev/null || echo 0)\n'
        f'  if [ "$done" -lt {kills} ]; then echo $((done + 1)) > "{counter}"; kill -9 $PPID; exit 1; fi;;\n'
        "esac\n"
        f'exec "{imageio_ffmpeg.get_ffmpeg_exe()}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), counter


@pytest.mark.parametrize("kills", [1, 9])
def test_a_killed_worker_is_retried_then_recorded_as_failed(tmp_path, spec, cluster, kills):
    ffmpeg, counter = killing_ffmpeg(tmp_path, kills)
    points = plan_points(
        [spec], ["x265", "x264"], ["per_tensor"], {"x265": [30], "x264": [30]}, baselines=("int8_per_tensor",)
    )
    sweep = Sweep(tmp_path / "s", jobs=2, threads=1, ffmpeg_path=ffmpeg, progress=False, backend=RayBackend(retries=1))
    records = {r["method"]: r for r in sweep.run(points)}
    assert records["x264"]["status"] == records["int8_per_tensor"]["status"] == "ok"  # the sweep went on
    if kills == 1:  # killed once, retried once, measured
        assert records["x265"]["status"] == "ok" and counter.read_text().strip() == "1"
    else:  # killed on both attempts: 1 + retries, then recorded
        assert records["x265"]["status"] == "failed" and counter.read_text().strip() == "2"
        assert "no result after 2 attempts" in records["x265"]["error"]
        assert Sweep(tmp_path / "s", backend=RayBackend()).pending(points) == points[1:2]  # tried again on rerun


def test_a_worker_without_the_encoder_records_the_reason_and_goes_on(tmp_path, spec, cluster):
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\necho 'simulated encoder crash' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    points = plan_points([spec], ["x265"], ["per_tensor"], {"x265": [None, 99]}, baselines=("fp32",))
    sweep = Sweep(tmp_path / "s", jobs=2, threads=1, ffmpeg_path=str(broken), progress=False, backend=RayBackend())
    by_qp = {(r["method"], r["qp"]): r for r in sweep.run(points)}
    assert by_qp[("fp32", None)]["status"] == "ok"
    assert by_qp[("x265", None)]["status"] == "failed" and "simulated encoder crash" in by_qp[("x265", None)]["error"]
    assert by_qp[("x265", 99)]["status"] == "skipped" and "outside" in by_qp[("x265", 99)]["reason"]


def test_a_hardware_point_waits_for_a_node_with_its_device(tmp_path, spec, cluster):
    points = plan_points([spec], ["h264_nvenc"], ["per_tensor"], {"h264_nvenc": [30]}, baselines=())
    sweep = Sweep(tmp_path / "s", jobs=2, threads=1, progress=False, backend=RayBackend())
    (record,) = sweep.run(points)
    assert record["status"] == "skipped" and record["retry"] and "nvenc" in record["reason"]
    assert sweep.pending(points) == points  # measured once a node with the device joins
    assert json.loads((tmp_path / "s" / "points" / f"{record['key']}.json").read_text()) == record


def test_more_threads_than_any_node_has_is_refused(tmp_path, spec, cluster):
    points = plan_points([spec], ["x264"], ["per_tensor"], {"x264": [30]}, baselines=())
    with pytest.raises(InputError, match="no node of the Ray cluster has more than 2 CPUs"):
        Sweep(tmp_path / "s", threads=3, progress=False, backend=RayBackend()).run(points)
