import json

import numpy as np
import pytest
import torch
from torch import nn

from vcwc.eval.classification import EvaluationError, evaluate, mean_kl_divergence
from vcwc.eval.datasets import Dataset, load_dataset
from vcwc.io import load_model
from vcwc.models.build import build_model
from vcwc.models.registry import Preprocessing, get_architecture

# One-pixel images whose value is the class the model below ranks first.
IDENTITY = Preprocessing(mean=(0.0,), std=(1.0,), scale=1.0)


class PredictsPixelValue(nn.Module):
    """Logits -|class - pixel|: top-1 is the pixel value, then its neighbours."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -(torch.arange(10.0) - x.flatten(1)).abs()


def pixel_dataset(pixels: list[int], labels: list[int]) -> Dataset:
    images = np.array(pixels, dtype=np.uint8).reshape(-1, 1, 1, 1)
    return Dataset(images, np.array(labels, dtype=np.int64), "synthetic")


@pytest.fixture(scope="module")
def digits(models_dir):
    model = build_model("digits_resnet", load_model(models_dir / "digits_resnet.safetensors").state_dict())
    return model, load_dataset(models_dir / "digits_test.npz")


def test_top1_and_top5_count_hits():
    # predictions 3, 3, 0, 9; labels: hit, within top-5 (|5-3| = 2), within top-5, miss
    dataset = pixel_dataset([3, 3, 0, 9], [3, 5, 2, 0])
    result = evaluate(PredictsPixelValue(), dataset, IDENTITY, batch_size=3, progress=False)
    assert result.top1 == 25.0 and result.top5 == 75.0 and result.n_images == 4
    assert result.agreement is None and result.mean_kl is None
    assert result.logits.shape == (4, 10)


def test_bundled_digits_model_reaches_target_accuracy(digits):
    model, test_set = digits
    result = evaluate(model, test_set, get_architecture("digits_resnet").preprocess, progress=False)
    assert len(test_set) == 450
    assert result.top1 >= 97.0


def test_model_agrees_fully_with_itself(digits):
    model, test_set = digits
    preprocess = get_architecture("digits_resnet").preprocess
    result = evaluate(model, test_set, preprocess, reference=model, batch_size=100, progress=False)
    assert result.agreement == 100.0
    assert result.mean_kl == pytest.approx(0.0, abs=1e-9)
    again = evaluate(model, test_set, preprocess, reference_logits=result.logits, progress=False)
    assert again.agreement == 100.0 and again.mean_kl == pytest.approx(0.0, abs=1e-9)


def test_perturbed_model_disagrees_a_little(digits):
    model, test_set = digits
    preprocess = get_architecture("digits_resnet").preprocess
    original = evaluate(model, test_set, preprocess, progress=False)
    noisy = build_model("digits_resnet", model.state_dict())
    with torch.no_grad():
        noisy.fc1.weight.add_(torch.randn(noisy.fc1.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    result = evaluate(noisy, test_set, preprocess, reference_logits=original.logits, progress=False)
    assert result.mean_kl > 0
    assert result.mean_kl == pytest.approx(mean_kl_divergence(original.logits, result.logits))
    assert 50 < result.agreement <= 100


def test_mean_kl_matches_definition():
    p_logits = torch.tensor([[0.0, 1.0, 2.0]])
    q_logits = torch.tensor([[2.0, 1.0, 0.0]])
    p, q = p_logits.softmax(1), q_logits.softmax(1)
    expected = (p * (p / q).log()).sum().item()
    assert mean_kl_divergence(p_logits, q_logits) == pytest.approx(expected)


def test_evaluate_restores_training_mode_and_rejects_bad_references():
    model = PredictsPixelValue().train()
    dataset = pixel_dataset([1, 2], [1, 2])
    evaluate(model, dataset, IDENTITY, progress=False)
    assert model.training
    with pytest.raises(EvaluationError, match="not both"):
        evaluate(model, dataset, IDENTITY, reference=model, reference_logits=torch.zeros(2, 10), progress=False)
    with pytest.raises(EvaluationError, match="3 rows"):
        evaluate(model, dataset, IDENTITY, reference_logits=torch.zeros(3, 10), progress=False)


def test_result_dict_is_json_without_logits():
    result = evaluate(
        PredictsPixelValue(), pixel_dataset([1], [1]), IDENTITY, reference=PredictsPixelValue(), progress=False
    )
    as_dict = result.to_dict()
    assert set(as_dict) == {"top1", "top5", "n_images", "agreement", "mean_kl"}
    assert json.loads(json.dumps(as_dict))["agreement"] == 100.0
    assert "logits" not in repr(result)
