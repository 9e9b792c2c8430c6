"""A tiny sweep on the bundled model: resumable, failures recorded, report rebuilt from JSON alone."""

import json
import stat

import pytest

from vcwc import cli
from vcwc.bench.experiment import correction_of
from vcwc.bench.names import CORRECTIONS
from vcwc.bench.sweep import ModelSpec, Sweep, knee_points, load_records, plan_points, sweep_recipe
from vcwc.bench.sweep_report import write_report
from vcwc.errors import InputError

pytestmark = pytest.mark.slow  # real codecs or models end to end


@pytest.fixture
def spec(models_dir):
    return ModelSpec(
        "digits", str(models_dir / "digits_resnet.safetensors"), "digits_resnet", str(models_dir / "digits_test.npz")
    )


def test_tiny_sweep_resumes_without_recomputing(tmp_path, spec):
    points = plan_points(
        [spec],
        ["x264", "svtav1"],
        ["per_tensor"],
        {"x264": [None, 30], "svtav1": [None, 40]},
        baselines=("fp32", "int8_zstd_per_tensor"),
    )
    sweep = Sweep(tmp_path, progress=False)
    first = sweep.run(points[:3])  # stands for a run killed after three points
    assert all(r["status"] == "ok" for r in first)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "points").glob("*.json")}
    assert sweep.pending(points) == points[3:]
    records = sweep.run(points)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished points untouched
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    lossless = next(r for r in records if r["method"] == "x264" and r["qp"] is None)
    assert lossless["top1"] == next(r for r in records if r["method"] == "svtav1" and r["qp"] is None)["top1"]
    assert (
        lossless["bits_per_weight"]
        > next(r for r in records if r["method"] == "x264" and r["qp"] == 30)["bits_per_weight"]
    )
    forced = Sweep(tmp_path, force=True, progress=False)
    assert forced.pending(points) == points


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, spec):
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\necho 'simulated encoder crash' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    points = plan_points([spec], ["x265"], ["per_tensor"], {"x265": [None, 99]}, baselines=("fp32",))
    records = Sweep(tmp_path / "sweep", ffmpeg_path=str(broken), progress=False).run(points)
    by_qp = {(r["method"], r["qp"]): r for r in records}
    assert by_qp[("fp32", None)]["status"] == "ok"
    assert by_qp[("x265", None)]["status"] == "failed" and "simulated encoder crash" in by_qp[("x265", None)]["error"]
    assert by_qp[("x265", 99)]["status"] == "skipped" and "outside" in by_qp[("x265", 99)]["reason"]


def test_report_is_rebuilt_identically_from_the_json(tmp_path, spec):
    points = plan_points(
        [spec], ["aom"], ["per_tensor", "per_channel"], {"aom": [None, 36]}, baselines=("int8_zstd_per_tensor",)
    )
    Sweep(tmp_path, progress=False).run(points)
    first = {name: path.read_bytes() for name, path in write_report(tmp_path).items()}
    (tmp_path / "evaluations").rename(tmp_path / "moved")  # the report needs nothing but points/
    second = {name: path.read_bytes() for name, path in write_report(tmp_path).items()}
    assert first == second
    assert set(first) == {
        "points.jsonl",
        "summary.csv",
        "summary.md",
        "headline.md",
        "short.md",
        "accuracy.png",
        "snr.png",
    }
    assert "## digits" in first["summary.md"].decode()
    assert len(first["points.jsonl"].decode().splitlines()) == len(load_records(tmp_path)) == 5


def test_knee_points_surround_the_first_qp_that_loses_agreement(spec):
    points = plan_points([spec], ["x264"], ["per_tensor"], {"x264": [None, 10, 20, 30, 40, 50]}, baselines=())
    screened = [
        {
            "status": "ok",
            "model": "digits",
            "method": "x264",
            "granularity": "per_tensor",
            "qp": qp,
            "agreement": agreement,
        }
        for qp, agreement in [(10, 100), (20, 99.5), (30, 98), (40, 90), (50, 50)]
    ]
    chosen = knee_points(screened, points, threshold=99.0, below=1, above=2)
    assert [p.qp for p in chosen] == [None, 20, 30, 40]
    assert all(p.eval_limit is None for p in chosen)


def test_sweep_command_dry_run_and_toml(tmp_path, spec, capsys):
    config = tmp_path / "models.toml"
    config.write_text(
        f'[[model]]\nname = "digits"\npath = "{spec.path}"\narch = "digits_resnet"\ndata = "{spec.data}"\n'
    )
    assert (
        cli.main(
            [
                "sweep",
                "--models",
                str(config),
                "--codecs",
                "x264",
                "--qps",
                "lossless,24",
                "--granularity",
                "per_tensor",
                "--baselines",
                "fp32",
                "--out",
                str(tmp_path / "s"),
                "--dry-run",
            ]
        )
        == 0
    )
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 3 and all(line.startswith("todo") for line in listed)
    assert cli.main(["sweep", "--models", "nonsense", "--out", str(tmp_path / "s")]) == 1
    assert "PATH:ARCH:DATA" in capsys.readouterr().err


def test_sweep_then_report_command(tmp_path, spec, capsys):
    out = tmp_path / "s"
    assert (
        cli.main(
            [
                "sweep",
                "--models",
                f"{spec.path}:digits_resnet:{spec.data}",
                "--codecs",
                "x265",
                "--qps",
                "28",
                "--granularity",
                "per_tensor",
                "--baselines",
                "none",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads((out / "points.jsonl").read_text().splitlines()[0])
    assert record["method"] == "x265" and record["qp"] == 28 and record["ffmpeg_version"].startswith("ffmpeg")
    assert cli.main(["report", str(out)]) == 0


def test_step_points_with_and_without_corrections(tmp_path, spec):
    points = plan_points(
        [spec], ["x264", "svtav1"], ["step"], step_qps=[-16], baselines=(), corrections=("none", "bias", "gptq+bias")
    )
    assert [(p.method, p.qp, p.correction) for p in points] == [
        ("x264", -16, "none"),
        ("x264", -16, "bias"),
        ("x264", -16, "gptq+bias"),
        ("svtav1", -16, "none"),
        ("svtav1", -16, "bias"),
        ("svtav1", -16, "gptq+bias"),
    ]
    records = Sweep(tmp_path, progress=False).run(points)
    assert all(r["status"] == "ok" and r["granularity"] == "step" and r["lossless"] for r in records)
    plain, corrected, gptq = records[:3]
    assert plain["step"] == corrected["step"] == 2**-4 and corrected["correction"] == "bias"
    assert plain["coded_bytes"] == corrected["coded_bytes"]  # the correction touches only uncoded tensors
    assert corrected["mean_kl"] < plain["mean_kl"]
    assert gptq["correction"] == "gptq+bias" and gptq["mean_kl"] < corrected["mean_kl"]
    assert records[3]["top1"] == plain["top1"] and records[5]["top1"] == gptq["top1"]  # lossless on the same symbols
    write_report(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "| x264 | step + bias corr. | -16 |" in summary and "| x264 | step + gptq + bias corr. | -16 |" in summary
    with pytest.raises(InputError, match="unknown correction"):
        plan_points([spec], ["x264"], ["step"], corrections=("magic",))


@pytest.mark.parametrize("correction", list(CORRECTIONS))
def test_every_sweep_correction_is_read_back_from_its_recipe(correction):
    recipe = sweep_recipe("x264", "step", -16, correction)
    assert correction_of(recipe) == (None if correction == "none" else correction)
    assert recipe.quantizer.step_qp == -16 and recipe.codec.qp is None


def test_a_module_callable_architecture_with_its_input_shape_from_toml(tmp_path, cifar10_dir, monkeypatch):
    """An architecture the registry does not know, built by the user's function: the noise needs its shape."""
    (tmp_path / "sweep_models.py").write_text(
        "from vcwc.models.cifar import CifarResNet\n\ndef resnet20():\n    return CifarResNet(20)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "models.toml"
    weights, data = cifar10_dir / "resnet20-12fca82f.th", cifar10_dir / "cifar10_test_jpeg.npz"
    entry = f'[[model]]\npath = "{weights}"\narch = "sweep_models:resnet20"\ndata = "{data}"\nlimit = 100\n'
    config.write_text(entry + "input_shape = [3, 32, 32]\n")
    (model,) = ModelSpec.parse(str(config))
    assert model.input_shape == (3, 32, 32)
    points = plan_points([model], ["x264"], ["step"], step_qps=[-16], baselines=(), corrections=("gptq+bias",))
    (record,) = Sweep(tmp_path / "s", progress=False).run(points)
    assert record["status"] == "ok", record.get("error")
    assert record["recipe"]["rounding"] == "gptq" and record["agreement"] > 80
    config.write_text(entry + 'input_shape = "3x32x32"\n')
    with pytest.raises(InputError, match="input_shape must be a list of positive ints"):
        ModelSpec.parse(str(config))
