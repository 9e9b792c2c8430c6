import io

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from vcwc.eval.classification import evaluate
from vcwc.eval.datasets import load_dataset
from vcwc.io import load_model
from vcwc.models.build import StateDictMismatchError, build_model, resolve
from vcwc.models.cifar import CifarBasicBlock
from vcwc.models.registry import ARCHITECTURES, UnknownArchitectureError, get_architecture

pytestmark = pytest.mark.slow  # real codecs or models end to end

# Counted from the architecture: stem conv + BN (1 + 5 entries); a BasicBlock has 2 convs and 2 BNs
# (12 entries), a Bottleneck 3 and 3 (18); a downsample adds conv + BN (6); fc weight + bias (2).
# resnet18: 6 + 8*12 + 3*6 + 2 = 122; resnet34: 6 + 16*12 + 3*6 + 2 = 218;
# resnet50: 6 + 16*18 + 4*6 + 2 = 320; resnet101: 6 + 33*18 + 24 + 2 = 626; resnet152: 6 + 50*18 + 24 + 2 = 932.
IMAGENET_LAYOUT = {
    # name: (state-dict entries, parameters, fc width, layer4.0.downsample.0.weight shape)
    "resnet18": (122, 11_689_512, 512, (512, 256, 1, 1)),
    "resnet34": (218, 21_797_672, 512, (512, 256, 1, 1)),
    "resnet50": (320, 25_557_032, 2048, (2048, 1024, 1, 1)),
    "resnet101": (626, 44_549_160, 2048, (2048, 1024, 1, 1)),
    "resnet152": (932, 60_192_808, 2048, (2048, 1024, 1, 1)),
}

# From the data README: (file, weight tensors of 2+ dims, their elements, trainable parameters,
# top-1 on the 10,000 JPEG test images, top-1 on the 846 lossless test images).
CIFAR_MODELS = {
    20: ("resnet20-12fca82f.th", 20, 268_336, 269_722, 81.03, 91.73),
    32: ("resnet32-d509ac18.th", 32, 461_872, 464_154, 82.56, 93.03),
    44: ("resnet44-014dd654.th", 44, 655_408, 658_586, 82.67, 93.74),
    56: ("resnet56-4bfd9763.th", 56, 848_944, 853_018, 83.20, 93.26),
}


def build_on_meta(name: str) -> torch.nn.Module:
    # Layout checks need names and shapes only; the meta device skips allocating 60M parameters.
    with torch.device("meta"):
        return resolve(name).build()


@pytest.mark.parametrize("name", IMAGENET_LAYOUT)
def test_imagenet_resnet_has_torchvision_layout(name):
    entries, parameters, fc_width, downsample_shape = IMAGENET_LAYOUT[name]
    model = build_on_meta(name)
    state = model.state_dict()
    assert len(state) == entries
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert state["fc.weight"].shape == (1000, fc_width)
    assert state["fc.bias"].shape == (1000,)
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer4.0.downsample.0.weight"].shape == downsample_shape
    assert state["layer4.0.downsample.1.running_var"].shape == (downsample_shape[0],)
    assert state["bn1.num_batches_tracked"].dtype == torch.int64
    assert state["layer1.0.bn1.num_batches_tracked"].shape == ()


def test_mobilenet_v2_has_torchvision_layout():
    model = build_on_meta("mobilenet_v2")
    state = model.state_dict()
    assert len(state) == 314 and sum(p.numel() for p in model.parameters()) == 3_504_872
    assert state["features.2.conv.1.0.weight"].shape == (96, 1, 3, 3)  # depthwise: 16 channels expanded 6x
    assert state["classifier.1.weight"].shape == (1000, 1280) and state["features.18.0.weight"].shape == (
        1280,
        320,
        1,
        1,
    )


def test_basic_block_resnets_have_no_downsample_in_first_stage():
    state = build_on_meta("resnet18").state_dict()
    assert not any(key.startswith("layer1.0.downsample") for key in state)
    assert state["layer1.0.conv2.weight"].shape == (64, 64, 3, 3)


def test_bottleneck_puts_stride_on_the_3x3_convolution():
    model = build_on_meta("resnet50")
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1)
    assert block.conv2.stride == (2, 2) and block.conv2.kernel_size == (3, 3)
    assert model.state_dict()["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert model.state_dict()["layer3.5.conv3.weight"].shape == (1024, 256, 1, 1)


def test_resnet18_runs_and_reloads_its_own_state_dict_strictly():
    model = build_model("resnet18")
    assert not model.training
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    build_model("resnet18", model.state_dict())


def test_cifar_resnet_layout_matches_data_readme():
    for depth, (_, weight_tensors, weight_elements, parameters, _, _) in CIFAR_MODELS.items():
        model = resolve(f"cifar_resnet{depth}").build()
        state = model.state_dict()
        assert sum(p.numel() for p in model.parameters()) == parameters
        assert sum(1 for v in state.values() if v.dim() >= 2) == weight_tensors
        assert sum(v.numel() for v in state.values() if v.dim() >= 2) == weight_elements
        assert not any(key.endswith("num_batches_tracked") for key in state)
        assert state["linear.weight"].shape == (10, 64)
    state_110 = resolve("cifar_resnet110").build().state_dict()
    assert sum(1 for v in state_110.values() if v.dim() >= 2) == 110


def test_cifar_option_a_shortcut_subsamples_and_zero_pads_channels():
    block = CifarBasicBlock(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    shortcut = block.shortcut(x)
    assert shortcut.shape == (2, 32, 4, 4)
    assert torch.equal(shortcut[:, 8:24], x[:, :, ::2, ::2])
    assert not shortcut[:, :8].any() and not shortcut[:, 24:].any()
    assert torch.equal(CifarBasicBlock(16, 16).shortcut(x), x)


def test_cifar_state_dict_round_trips_through_torch_and_safetensors():
    model = resolve("cifar_resnet20").build()
    model.train()
    model(torch.randn(4, 3, 32, 32))  # updates running statistics without a batch counter
    state = model.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    reloaded = build_model("cifar_resnet20", torch.load(buffer, weights_only=True))
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in state.items())
    build_model("cifar_resnet20", load_safetensors(save_safetensors(state)))


@pytest.mark.parametrize("depth", CIFAR_MODELS)
def test_shipped_cifar_checkpoints_load_strictly(cifar10_dir, depth):
    loaded = load_model(cifar10_dir / CIFAR_MODELS[depth][0])
    assert loaded.prefix == "module."
    model = build_model(f"cifar_resnet{depth}", loaded.state_dict())
    assert list(model.state_dict()) == loaded.names


@pytest.fixture(scope="module")
def cifar_jpeg_test_set(cifar10_dir):
    return load_dataset(cifar10_dir / "cifar10_test_jpeg.npz")


@pytest.fixture(scope="module")
def cifar_lossless_test_set(cifar10_dir):
    return load_dataset(cifar10_dir / "cifar10_test_lossless.npz")


@pytest.mark.parametrize("depth", CIFAR_MODELS)
def test_shipped_cifar_models_reproduce_published_accuracy(
    cifar10_dir, cifar_jpeg_test_set, cifar_lossless_test_set, depth
):
    file, _, _, _, jpeg_top1, lossless_top1 = CIFAR_MODELS[depth]
    name = f"cifar_resnet{depth}"
    model = build_model(name, load_model(cifar10_dir / file).state_dict())
    preprocess = get_architecture(name).preprocess

    lossless = evaluate(model, cifar_lossless_test_set, preprocess, progress=False)
    assert lossless.n_images == 846
    assert round(lossless.top1, 2) == lossless_top1  # one image is 0.12 points: exact

    jpeg = evaluate(model, cifar_jpeg_test_set, preprocess, progress=False)
    assert jpeg.n_images == 10_000
    assert jpeg.top1 == pytest.approx(jpeg_top1, abs=0.1)


def test_registry_names_and_specs():
    assert list(ARCHITECTURES) == [
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2",
        "cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56", "cifar_resnet110",
        "digits_resnet",
    ]  # fmt: skip
    imagenet = get_architecture("resnet50")
    assert imagenet.num_classes == 1000
    assert (imagenet.preprocess.resize, imagenet.preprocess.center_crop) == (256, 224)
    cifar = get_architecture("cifar_resnet56")
    assert cifar.preprocess.mean == (0.485, 0.456, 0.406) and cifar.preprocess.resize is None
    assert len(get_architecture("digits_resnet").preprocess.mean) == 1
    assert all(spec.description and "\n" not in spec.description for spec in ARCHITECTURES.values())


def test_unknown_architecture_lists_known_names():
    with pytest.raises(UnknownArchitectureError, match="cifar_resnet56") as error:
        get_architecture("resnet19")
    assert isinstance(error.value, ValueError)


def test_build_model_names_missing_unexpected_and_misshapen_keys():
    state = resolve("cifar_resnet20").build().state_dict()
    state.pop("linear.bias")
    state["fc.weight"] = torch.zeros(10, 64)
    state["conv1.weight"] = torch.zeros(16, 3, 5, 5)
    with pytest.raises(StateDictMismatchError) as error:
        build_model("cifar_resnet20", state)
    message = str(error.value)
    assert "missing keys: linear.bias" in message
    assert "unexpected keys: fc.weight" in message
    assert "conv1.weight (16, 3, 5, 5) != (16, 3, 3, 3)" in message
    assert isinstance(error.value, ValueError)


class TiedLanguageModel(torch.nn.Module):
    """An output layer tied to the input embedding, and a position buffer kept out of the state dict, as
    transformers builds them."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 50, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("positions", torch.zeros(1, 16, dtype=torch.int64), persistent=False)

    def forward(self, ids):
        return self.head(self.embed(ids))


def test_a_tied_tensor_stored_once_and_a_non_persistent_buffer_load():
    """As Hugging Face saves such a model: the tied matrix under one name, the buffer as the file has it."""
    embedding = torch.randn(50, 8)
    model = build_model(TiedLanguageModel(), {"embed.weight": embedding, "positions": torch.arange(16)[None]})
    assert torch.equal(model.head.weight, embedding) and model.head.weight is model.embed.weight
    assert torch.equal(model.positions, torch.arange(16)[None])
    also_head = build_model(TiedLanguageModel(), {"head.weight": embedding})  # either name carries it
    assert torch.equal(also_head.embed.weight, embedding)


def test_a_buffer_of_another_shape_and_a_tensor_tied_to_nothing_present_still_mismatch():
    with pytest.raises(StateDictMismatchError, match="unexpected keys: positions"):
        build_model(TiedLanguageModel(), {"embed.weight": torch.randn(50, 8), "positions": torch.arange(8)[None]})
    with pytest.raises(StateDictMismatchError, match="missing keys: embed.weight, head.weight"):
        build_model(TiedLanguageModel(), {})


def test_digits_resnet_is_small_with_one_large_fully_connected_layer():
    model = build_model("digits_resnet")
    state = model.state_dict()
    assert max(v.numel() for k, v in state.items() if v.dim() == 2) >= 65_536
    assert sum(v.numel() * v.element_size() for v in state.values()) < 512 * 1024
    images = np.zeros((3, 8, 8, 1), dtype=np.uint8)
    with torch.inference_mode():
        assert model(torch.from_numpy(images).permute(0, 3, 1, 2).float()).shape == (3, 10)
