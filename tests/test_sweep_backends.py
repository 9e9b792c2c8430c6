"""What the sweep's backends share, without Ray: the evaluation cache, device resources, shipped files."""

import sys
import threading
import time
from pathlib import Path

import pytest

from vcwc import cli
from vcwc.bench.backends import make_backend
from vcwc.bench.evaluation_cache import EvaluationCache
from vcwc.bench.ray_backend import DEVICE_RESOURCES, materialize, pack, point_resources, task_options
from vcwc.bench.sweep import ModelSpec, Point, Sweep, plan_points, sweep_recipe
from vcwc.bench.sweep_task import PointTask
from vcwc.codecs import codec_names, get_codec
from vcwc.errors import InputError


@pytest.fixture
def spec(models_dir):
    return ModelSpec(
        "digits", str(models_dir / "digits_resnet.safetensors"), "digits_resnet", str(models_dir / "digits_test.npz")
    )


def test_a_claimed_evaluation_is_waited_for_not_repeated():
    cache = EvaluationCache({"known": {"top1": 1.0}})
    assert cache.claim("known", "a") == {"top1": 1.0}
    assert cache.claim("new", "a") is None  # a scores it
    assert cache.claim("new", "a") is None  # a retried task takes its own claim back
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(cache.claim("new", "b")))
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive() and not answers  # b waits for a's score
    cache.store("new", "a", {"top1": 2.0})
    waiter.join(5)
    assert answers == [{"top1": 2.0}]
    assert cache.claim("other", "a") is None
    waiter = threading.Thread(target=lambda: answers.append(cache.claim("other", "b")))
    waiter.start()
    cache.release("a")  # a ended without a score: b takes the claim over
    waiter.join(5)
    assert answers[-1] is None and not waiter.is_alive()


def test_a_stale_claim_is_taken_over():
    cache = EvaluationCache(claim_timeout=0.2)
    assert cache.claim("w", "gone") is None
    start = time.monotonic()
    assert cache.claim("w", "b") is None
    assert 0.15 < time.monotonic() - start < 5


@pytest.mark.slow
def test_identical_weights_are_scored_once_in_a_process_pool(tmp_path, spec):
    # int8 per tensor coded losslessly by two codecs, and int8 + zstd: three points, one set of weights.
    points = plan_points(
        [spec],
        ["x264", "svtav1"],
        ["per_tensor"],
        {"x264": [None], "svtav1": [None]},
        baselines=("int8_zstd_per_tensor",),
    )
    sweep = Sweep(tmp_path, jobs=2, threads=1, progress=False)
    records = sweep.run(points)
    assert [r["status"] for r in records] == ["ok"] * 3
    assert len({r["top1"] for r in records}) == 1 and len({r["mean_kl"] for r in records}) == 1
    assert sweep.evaluated == 1 and len(list((tmp_path / "evaluations").glob("*.json"))) == 1
    assert sum(r["cached_evaluation"] for r in records if r["codec"]) >= 1
    assert all(r["threads"] == 1 for r in records)
    forced = Sweep(tmp_path, jobs=2, threads=1, progress=False, force=True)
    assert [r["top1"] for r in forced.run(points)] == [r["top1"] for r in records]
    assert forced.evaluated == 0  # the scores on disk are reused


def test_hardware_points_ask_for_their_device(spec):
    for name in codec_names():
        resources = point_resources(Point(spec, name, sweep_recipe(name, "per_tensor", 30)))
        if get_codec(name).hardware:
            assert list(resources) == [name.rsplit("_", 1)[1]] and resources[next(iter(resources))] == 1
            assert next(iter(resources)) in DEVICE_RESOURCES
        else:
            assert resources == {}, name
    nvenc = plan_points([spec], ["hevc_nvenc"], ["per_tensor"], {"hevc_nvenc": [30]}, baselines=("fp32",))
    options = [task_options(PointTask(p, "k", {}, threads=3), retries=2) for p in nvenc]
    assert options[0] == {"num_cpus": 3, "max_retries": 2, "retry_exceptions": False}  # the fp32 baseline
    assert options[1] == {"num_cpus": 3, "max_retries": 2, "retry_exceptions": False, "resources": {"nvenc": 1.0}}


def test_files_and_folders_reach_a_worker_as_local_copies(tmp_path, models_dir):
    folder = tmp_path / "images"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "a.png").write_bytes(b"not really a png")
    (folder / "dog").mkdir()
    (folder / "dog" / "b.png").write_bytes(b"\x00" * 100)
    root = tmp_path / "node"
    for path in (str(models_dir / "digits_resnet.safetensors"), str(folder)):
        kind, payload = pack(path)
        assert pack(path) == (kind, payload)  # the same bytes every time: its digest names the copy
        copy = materialize(path, kind, "f00d" * 16, lambda payload=payload: payload, root=root)
        assert copy.startswith(str(root)) and copy.endswith(path.rsplit("/", 1)[1])
        if kind == "file":
            assert open(copy, "rb").read() == open(path, "rb").read()
        else:
            assert sorted(p.relative_to(copy).as_posix() for p in Path(copy).rglob("*")) == [
                "cat",
                "cat/a.png",
                "dog",
                "dog/b.png",
            ]
            assert (Path(copy) / "dog" / "b.png").read_bytes() == b"\x00" * 100
        assert materialize(path, kind, "f00d" * 16, lambda: pytest.fail("fetched twice"), root=root) == copy
    # A text model's file takes its Hugging Face companions along, into the folder it is read from.
    model = tmp_path / "hf" / "model.safetensors"
    model.parent.mkdir()
    model.write_bytes(b"weights")
    (model.parent / "config.json").write_text("{}")
    (model.parent / "other.bin").write_bytes(b"left behind")
    kind, payload = pack(str(model), ("config.json",))
    copy = Path(materialize(str(model), kind, "beef" * 16, lambda: payload, root=root))
    assert kind == "bundle" and copy.name == "model.safetensors" and copy.read_bytes() == b"weights"
    assert sorted(p.name for p in copy.parent.iterdir()) == ["config.json", "model.safetensors"]
    assert materialize(str(model), kind, "beef" * 16, lambda: pytest.fail("fetched twice"), root=root) == str(copy)
    with pytest.raises(InputError, match="cannot be read"):
        pack(str(tmp_path / "missing.pt"))


def test_without_ray_the_ray_backend_names_the_install_command(monkeypatch, tmp_path, spec, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    with pytest.raises(InputError, match=r'pip install -e "\.\[ray\]"'):
        make_backend("ray")
    argv = ["sweep", "--models", f"{spec.path}:digits_resnet:{spec.data}", "--out", str(tmp_path / "s")]
    assert cli.main([*argv, "--backend", "ray"]) == 1
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err
    assert cli.main([*argv, "--ray-address", "auto"]) == 1
    assert "--ray-address needs --backend ray" in capsys.readouterr().err
