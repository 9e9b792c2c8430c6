"""The data-free methods on every kind of layer a real model has: never a crash; what a method cannot
serve keeps nearest rounding or no correction, and the file says which and why."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vcwc
from vcwc.quant.noise import layer_patches

pytestmark = pytest.mark.slow  # real codecs end to end

SMALLEST = vcwc.RECIPES["smallest"].with_changes(step_qp=-20)


class TfSamePadding(nn.Module):
    """Stride-2 stages down to a few pixels, then a ZeroPad2d before a depthwise 5x5: with the noise at a
    capped 64 px this used to end in 'input with spatial size (4, 4), kernel_size=(5, 5)'."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for width in (8, 16, 16, 32, 32):
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers += [nn.ZeroPad2d(2), nn.Conv2d(32, 32, 5, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class OddConvolutions(nn.Module):
    def __init__(self):
        super().__init__()
        self.dilated = nn.Conv2d(4, 8, 3, dilation=2, padding=2)
        self.grouped = nn.Conv2d(8, 8, 3, groups=4, padding=1, padding_mode="reflect")
        self.even_same = nn.Conv2d(8, 8, 4, padding="same", bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.line = nn.Conv1d(8, 8, 3, padding=1)
        self.volume = nn.Conv3d(1, 2, 3, padding=1)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = F.relu(self.bn(self.even_same(self.grouped(F.relu(self.dilated(x))))))
        sequence = self.line(x.mean(dim=2))  # (N, 8, W)
        volume = self.volume(x[:, None, :4])  # (N, 2, 4, H, W)
        return self.head(torch.cat([sequence.mean(dim=2), volume.mean(dim=(2, 3, 4)).repeat(1, 4)], dim=1))


class TinyTransformer(nn.Module):
    """Token ids in; an attention block with packed projections (no Linear layers), tied input and output."""

    def __init__(self, vocabulary=200, width=32):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.attention = nn.MultiheadAttention(width, 4, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 64), nn.GELU(), nn.Linear(64, width))
        self.lm_head = nn.Linear(width, vocabulary, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids):
        x = self.embed(ids)
        x = x + self.attention(x, x, x, need_weights=False)[0]
        x = self.norm(x + self.mlp(x))
        return self.lm_head(x)


class WideKernel(nn.Module):
    """A pitch tracker's shape (CREPE): 1-D audio through convolutions with 64-tap kernels, so one layer's
    weight matrix has 1,088 x 16 = 17,408 columns, whose gptq moments would take 1.1 GiB."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1088, (16, 1), stride=(8, 1))
        self.bn1 = nn.BatchNorm2d(1088)
        self.conv2 = nn.Conv2d(1088, 2, (16, 1))
        self.bn2 = nn.BatchNorm2d(2)
        self.head = nn.Linear(2, 4)

    def forward(self, audio):
        x = F.relu(self.bn1(self.conv1(audio[:, None, :, None])))
        return self.head(F.relu(self.bn2(self.conv2(x))).mean(dim=(2, 3)))


def compress_and_reload(model, recipe=SMALLEST, **options):
    torch.manual_seed(0)
    for parameter in model.parameters():
        parameter.data.normal_(0, 0.2)
    compressed = vcwc.compress(model, recipe, **options)
    rebuilt = type(model)()
    rebuilt.load_state_dict(vcwc.decompress(compressed.data), strict=True)
    return compressed, rebuilt


def test_depthwise_after_tf_padding_at_full_size():
    compressed, _ = compress_and_reload(TfSamePadding().eval(), input_shape=(3, 224, 224))
    methods = compressed.meta.methods
    assert "features.16.weight" in methods["gptq_rounding"]["served"]  # the depthwise 5x5 after the pad
    assert methods["inputs"]["shape"] == [2, 3, 224, 224]
    assert methods["bias_correction"]["corrected"]["features.16.weight"] == "features.17.running_mean"


class Conv2dSame(nn.Conv2d):
    """TF-style "same" padding computed in its own forward (as timm's and geffnet's ports do): the layer
    declares no padding, and nn.Conv2d.forward is never called."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.stride)):
            needed = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [needed // 2, needed - needed // 2]
        return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)


class SamePaddingInForward(nn.Module):
    """timm-style Conv2dSame layers (padding in their own forward) down to maps smaller than the last
    kernel: the noise pass used to end in 'input with spatial size (2, 2), kernel_size=(5, 5)'."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for width in (8, 16, 16, 32, 32):
            layers += [Conv2dSame(channels, width, 3, stride=2, bias=False), nn.BatchNorm2d(width), nn.ReLU6()]
            channels = width
        layers += [Conv2dSame(32, 32, 5, stride=2, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_padding_done_in_forward_on_maps_smaller_than_the_kernel():
    compressed, _ = compress_and_reload(SamePaddingInForward().eval(), input_shape=(3, 64, 64))
    assert "features.15.weight" in compressed.meta.methods["gptq_rounding"]["served"]  # the 5x5 on a 2x2 map


def test_patches_of_padding_done_in_forward_are_the_convolution_even_on_a_map_smaller_than_the_kernel():
    torch.manual_seed(0)
    layer = Conv2dSame(4, 4, 5, stride=2, groups=4, bias=False)
    x = torch.randn(2, 4, 3, 2)  # smaller than the kernel: unfolding it as declared would fail
    output = layer(x)
    patches = layer_patches(layer, x, tuple(output.shape[2:]))
    weights = layer.weight.detach().reshape(4, -1)
    expected = output.permute(0, 2, 3, 1).reshape(-1, 4)
    for group in range(4):
        torch.testing.assert_close(patches[group] @ weights[group], expected[:, group], rtol=1e-4, atol=1e-4)


class Upsampling(nn.Module):
    """A decoder's shape: a transposed convolution into a BatchNorm, then a GRU over the columns."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.gru = nn.GRU(4, 6, batch_first=True)

    def forward(self, x):
        columns = F.relu(self.bn(self.up(F.relu(self.down(x))))).mean(dim=2).transpose(1, 2)
        return self.gru(columns)[0][:, -1]


def test_transposed_convolutions_get_the_bias_correction_and_nearest_rounding_named():
    compressed, _ = compress_and_reload(Upsampling().eval(), input_shape=(3, 16, 16))
    methods = compressed.meta.methods
    assert methods["bias_correction"]["corrected"]["up.weight"] == "bn.running_mean"
    assert "ConvTranspose2d" in methods["gptq_rounding"]["nearest_instead"]["up.weight"]
    assert "GRU" in methods["gptq_rounding"]["nearest_instead"]["gru.weight_ih_l0"]


def test_dilated_grouped_reflect_even_same_conv1d_conv3d():
    compressed, _ = compress_and_reload(OddConvolutions().eval(), input_shape=(4, 12, 12))
    gptq = compressed.meta.methods["gptq_rounding"]
    assert {"dilated.weight", "grouped.weight", "even_same.weight", "line.weight", "head.weight"} <= set(gptq["served"])
    assert "volume.weight" in gptq["nearest_instead"]  # Conv3d keeps nearest rounding, named
    bias = compressed.meta.methods["bias_correction"]
    assert (
        bias["corrected"]["even_same.weight"] == "bn.running_mean"
        and bias["corrected"]["volume.weight"] == "volume.bias"
    )


def test_a_layer_too_wide_for_gptq_keeps_nearest_rounding_named():
    compressed, _ = compress_and_reload(WideKernel().eval(), input_shape=(256,))
    gptq = compressed.meta.methods["gptq_rounding"]
    assert {"conv1.weight", "head.weight"} <= set(gptq["served"])
    assert "17,408 columns" in gptq["nearest_instead"]["conv2.weight"]
    assert "conv2.weight" in compressed.meta.methods["bias_correction"]["corrected"]  # bias correction still serves it


def test_layers_past_the_memory_for_moments_keep_nearest_rounding():
    from vcwc.quant.noise import noise_statistics

    model = OddConvolutions().eval()
    budget = 4 * (4 * 9) ** 2 + 4 * 4 * (2 * 9) ** 2  # the moments of `dilated` and `grouped` (4 groups)
    stats = noise_statistics(
        model, ["dilated.weight", "grouped.weight", "even_same.weight"], (4, 12, 12), moments=True, moment_budget=budget
    )
    assert set(stats.moments) == {"dilated.weight", "grouped.weight"}
    assert "fill the" in stats.no_moments["even_same.weight"]


def test_tokens_attention_and_tied_weights():
    model = TinyTransformer().eval()
    methods_on = SMALLEST.with_changes(rounding="gptq", bias_correction="on")
    compressed, rebuilt = compress_and_reload(model, methods_on, input_shape=(16,))
    records = {t.name: t for t in compressed.meta.tensors}
    assert records["lm_head.weight"].storage == "alias" and records["lm_head.weight"].alias_of == "embed.weight"
    assert rebuilt.lm_head.weight is rebuilt.embed.weight  # loading keeps the tie
    methods = compressed.meta.methods
    assert methods["inputs"]["kind"] == "random_tokens" and methods["inputs"]["vocabulary"] == 200
    skipped = methods["gptq_rounding"]["nearest_instead"]
    assert "MultiheadAttention" in skipped["attention.in_proj_weight"] and "Embedding" in skipped["embed.weight"]
    assert {"mlp.0.weight", "mlp.2.weight"} <= set(methods["gptq_rounding"]["served"])
    # MultiheadAttention uses its out_proj's weight without calling the layer: named, never a crash
    assert "never reached" in skipped["attention.out_proj.weight"]
    report = compressed.size_report()
    assert report.coded_weights == sum(p.numel() for p in model.parameters() if p.dim() >= 2)  # tied: counted once


def test_real_inputs_drive_the_methods_and_are_recorded(tmp_path):
    model = TinyTransformer().eval()
    ids = torch.randint(0, 200, (6, 12), generator=torch.Generator().manual_seed(1))
    torch.save({"ids": ids}, tmp_path / "inputs.pt")
    compressed, _ = compress_and_reload(model, calibration=tmp_path / "inputs.pt")
    inputs = compressed.meta.methods["inputs"]
    assert inputs["kind"] == "calibration_inputs" and inputs["inputs"] == 6 and inputs["file"].endswith("inputs.pt")
    assert (compressed.recipe["rounding"], compressed.recipe["bias_correction"]) == ("gptq", "off")  # no BatchNorm
    assert any("bias correction stays off" in note for note in compressed.notes)


def test_auto_leaves_gptq_and_bias_correction_off_on_random_tokens_and_says_why():
    compressed, _ = compress_and_reload(TinyTransformer().eval(), input_shape=(16,))
    # dependent quantization instead of gptq: it needs no statistics
    assert (compressed.recipe["rounding"], compressed.recipe["bias_correction"]) == ("dependent", "off")
    assert "gptq_rounding" not in (compressed.meta.methods or {})
    assert any("random inputs" in note for note in compressed.notes)


def test_a_model_the_noise_cannot_drive_is_an_error_naming_it():
    class NeedsTwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x, y):
            return self.fc(x + y)

    with pytest.raises(vcwc.InputError, match="forward pass of NeedsTwoInputs failed"):
        vcwc.compress(NeedsTwoInputs(), SMALLEST.with_changes(rounding="gptq"), input_shape=(8,))
    weight_only = vcwc.compress(NeedsTwoInputs().state_dict(), SMALLEST)  # no architecture: weight-only
    assert weight_only.recipe["rounding"] == "dependent" and weight_only.recipe["bias_correction"] == "off"


def test_methods_that_would_not_fit_in_memory_stay_off_or_are_refused(monkeypatch):
    from vcwc.pipeline import methods

    monkeypatch.setattr(methods, "available_memory", lambda: 1 << 20)
    compressed, _ = compress_and_reload(TinyTransformer().eval(), input_shape=(16,))
    assert compressed.recipe["quantizer"]["allocation"] == "uniform"
    assert list(compressed.meta.methods) == ["dependent_quantization"]  # no pass of inputs: it needs none
    assert any("weight-only" in note and "GiB available" in note for note in compressed.notes)
    with pytest.raises(vcwc.InputError, match="allocation sensitivity need about .* GiB"):
        compress_and_reload(
            TinyTransformer().eval(), SMALLEST.with_changes(allocation="sensitivity"), input_shape=(16,)
        )
