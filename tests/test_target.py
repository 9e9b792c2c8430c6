"""--target-drop: a search by evaluation on calibration images, on the bundled digits model."""

import json

import pytest

from vcwc import cli
from vcwc.bench.target import MAX_GROUP_MOVE, search
from vcwc.errors import InputError
from vcwc.eval.datasets import load_dataset
from vcwc.io import load_model

pytestmark = pytest.mark.slow  # real codecs or models end to end


@pytest.fixture(scope="module")
def digits(models_dir):
    return (load_model(models_dir / "digits_resnet.safetensors"), load_dataset(models_dir / "digits_test.npz"))


def test_search_meets_the_budget_and_moves_groups_within_bounds(digits):
    loaded, calibration = digits
    searched = search(loaded, "digits_resnet", calibration, 1.0, max_evaluations=20)
    best = searched.best
    assert 0 < searched.evaluations <= 20
    assert 100 - best.agreement <= 1.0
    assert best in searched.history
    shared = max(
        c.step_qps["fc1.weight"] for c in searched.history[:6] if len(set(c.step_qps.values())) == 1 and c.meets(1.0)
    )
    assert all(abs(qp - shared) <= MAX_GROUP_MOVE for qp in best.step_qps.values())
    uniform = next(c for c in searched.history if set(c.step_qps.values()) == {shared})
    assert best.bits <= uniform.bits and best.mean_kl <= uniform.mean_kl  # a trade only if it pays
    coarser = [c for c in searched.history if len(set(c.step_qps.values())) == 1 and c.step_qps["fc1.weight"] > shared]
    assert coarser and not any(c.meets(1.0) for c in coarser)  # the shared QP is the coarsest that passed


def test_an_impossible_budget_is_refused(digits):
    loaded, calibration = digits
    with pytest.raises(InputError, match="target drop"):
        search(loaded, "digits_resnet", calibration, 0.0)


def test_compress_with_target_drop(tmp_path, models_dir, capsys):
    model, data = models_dir / "digits_resnet.safetensors", models_dir / "digits_test.npz"
    out = tmp_path / "t.vcwc"
    assert (
        cli.main(
            ["compress", str(model), "-o", str(out), "--codec", "x264", "--target-drop", "1", "--arch", "digits_resnet"]
        )
        == 1
    )
    assert "--calibration" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "compress",
                str(model),
                "-o",
                str(out),
                "--codec",
                "x264",
                "--target-drop",
                "1",
                "--arch",
                "digits_resnet",
                "--calibration",
                str(data),
                "--max-evaluations",
                "12",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["target_drop"]["evaluations"] <= 12 and summary["target_drop"]["agreement"] >= 99.0
    assert out.exists() and summary["bits_per_weight"] < 4
