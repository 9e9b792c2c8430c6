"""The optional NNCodec baseline: clear errors without its environment; real round trips where it exists.

The round-trip tests need the environment scripts/setup_nncodec.sh builds (or $VCWC_NNCODEC_PYTHON) and
skip without it; CI does not build it (minutes of C++ compilation).
"""

import sys

import numpy as np
import pytest

from vcwc.bench import nncodec
from vcwc.bench.sweep import ModelSpec, Sweep, plan_points
from vcwc.errors import InputError, NNCodecError, NNCodecUnavailable

pytestmark = pytest.mark.slow  # real codecs or models end to end


@pytest.fixture
def nothing_configured(monkeypatch, tmp_path):
    monkeypatch.delenv(nncodec.PYTHON_ENV, raising=False)
    monkeypatch.setattr(nncodec, "DEFAULT_VENV", tmp_path / "no-venv")


@pytest.fixture(scope="module")
def nncodec_python() -> str:
    try:
        return nncodec.find_python()
    except NNCodecUnavailable as exc:
        pytest.skip(f"no NNCodec environment ({exc})")


@pytest.fixture
def spec(models_dir):
    return ModelSpec(
        "digits", str(models_dir / "digits_resnet.safetensors"), "digits_resnet", str(models_dir / "digits_test.npz")
    )


def random_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "features.0.weight": rng.normal(0, 0.05, (32, 16, 3, 3)).astype(np.float32),
        "classifier.weight": rng.normal(0, 0.1, (10, 32)).astype(np.float32),
    }


def snr_db(reference: np.ndarray, values: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((values - reference) ** 2.0)))


def test_without_an_environment_the_error_says_how_to_set_one_up(nothing_configured):
    with pytest.raises(NNCodecUnavailable) as caught:
        nncodec.nncodec_roundtrip(random_tensors(), -32)
    message = str(caught.value)
    assert "scripts/setup_nncodec.sh" in message and "VCWC_NNCODEC_PYTHON" in message


def test_a_configured_python_that_does_not_exist_is_an_input_error(monkeypatch, tmp_path):
    monkeypatch.setenv(nncodec.PYTHON_ENV, str(tmp_path / "missing" / "python"))
    with pytest.raises(InputError, match=r"\$VCWC_NNCODEC_PYTHON.*does not exist"):
        nncodec.find_python()


def test_a_failing_worker_reports_its_stderr(monkeypatch):
    # vcwc's own Python has no nncodec: the worker starts, fails to import it, and says so.
    with pytest.raises(NNCodecError) as caught:
        nncodec.nncodec_roundtrip(random_tensors(), -32, python=sys.executable)
    message = str(caught.value)
    assert "exit status 1" in message and "No module named 'nncodec'" in message
    assert "nncodec_worker.py" in message  # the command, to rerun it by hand


def test_bad_arguments_are_refused_before_starting_anything(nothing_configured):
    with pytest.raises(InputError, match="whole number"):
        nncodec.nncodec_roundtrip(random_tensors(), -32.5)
    with pytest.raises(InputError, match="float"):
        nncodec.nncodec_roundtrip({"w": np.zeros((2, 2), np.int64)}, -32)


def test_sweep_skips_nncodec_points_until_it_is_set_up(nothing_configured, tmp_path, spec):
    points = plan_points([spec], [], [], baselines=(), nncodec_qps=[-30])
    assert [(p.method, p.qp) for p in points] == [("nncodec", -30)]
    sweep = Sweep(tmp_path / "sweep", progress=False)
    [record] = sweep.run(points)
    assert record["status"] == "skipped" and "setup_nncodec.sh" in record["reason"]
    assert sweep.pending(points) == points  # tried again on the next run, once it may be installed


def test_nncodec_points_are_planned_only_when_asked(spec):
    assert not [p for p in plan_points([spec], ["x264"], ["per_tensor"], {"x264": [30]}) if p.is_nncodec]


def test_round_trip_keeps_names_shapes_and_quality(nncodec_python):
    tensors = random_tensors()
    fine = nncodec.nncodec_roundtrip(tensors, -32, python=nncodec_python)
    coarse = nncodec.nncodec_roundtrip(tensors, -24, python=nncodec_python)
    assert fine.version == "2.1.3"
    for result in (fine, coarse):
        assert list(result.reconstructed) == list(tensors)
        for name, array in tensors.items():
            assert result.reconstructed[name].shape == array.shape
            assert result.reconstructed[name].dtype == np.float32
        assert result.encode_seconds > 0 and result.decode_seconds > 0 and result.startup_seconds > 0
    # About 6 dB per 4 QP steps (the step doubles); measured 28.1/33.7 dB at -32 and 16.5/21.8 dB at -24.
    assert all(snr_db(a, fine.reconstructed[n]) > 25 for n, a in tensors.items())
    assert all(13 < snr_db(a, coarse.reconstructed[n]) < 25 for n, a in tensors.items())
    weights = sum(a.size for a in tensors.values())
    assert 8 * coarse.bitstream_bytes / weights < 8 * fine.bitstream_bytes / weights < 8
    assert len(fine.bitstream) == fine.bitstream_bytes


def test_the_bitstream_carries_the_tensor_names(nncodec_python):
    tensors = random_tensors()
    short = {f"t{index}": array for index, array in enumerate(tensors.values())}
    long = nncodec.nncodec_roundtrip(tensors, -28, python=nncodec_python)
    brief = nncodec.nncodec_roundtrip(short, -28, python=nncodec_python)
    assert long.name_bytes == sum(len(name) + 1 for name in tensors)
    assert long.bitstream_bytes - brief.bitstream_bytes == long.name_bytes - brief.name_bytes


def test_sweep_point_on_the_bundled_model(nncodec_python, tmp_path, spec):
    points = plan_points([spec], [], [], baselines=("int8_zstd_per_tensor",), nncodec_qps=[-30])
    records = Sweep(tmp_path / "sweep", progress=False, nncodec_python=nncodec_python).run(points)
    zstd, record = records
    assert record["status"] == "ok", record.get("error")
    assert record["method"] == "nncodec" and record["qp"] == -30
    assert record["coded_weights"] == zstd["coded_weights"]
    assert record["uncoded_bytes"] == zstd["uncoded_bytes"]
    assert record["file_bytes"] == record["coded_bytes"] + record["uncoded_bytes"]
    # Measured 3.89 bits per weight, 23.7 dB, 100% agreement on the 450 held-out digits.
    assert 3.0 < record["bits_per_weight"] < 5.0 < zstd["bits_per_weight"]
    assert record["weight_snr_db"] > 20 and record["agreement"] >= 99.0
    assert record["bitstream_includes_names_and_shapes"] and record["bitstream_name_bytes"] > 0
    assert record["encode_seconds"] >= record["encode_seconds_excl_startup"] > 0
