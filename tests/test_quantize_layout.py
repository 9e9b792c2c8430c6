import numpy as np
import pytest
import torch

from vcwc import InputError, QuantConfig, dequantize, quantize
from vcwc.format import layout
from vcwc.metrics import entropy_bits, snr_db


def test_per_tensor_scale_is_max_abs_over_127():
    weights = torch.tensor([[0.5, -1.27], [0.0, 1.0]])
    q = quantize(weights, QuantConfig())
    assert q.scales.tolist() == [pytest.approx(0.01)]
    assert q.symbols.tolist() == [[50, -127], [0, 100]]


def test_per_channel_gives_each_output_channel_its_own_scale():
    weights = torch.randn(8, 4, 3, 3) * torch.arange(1, 9).view(8, 1, 1, 1)
    q = quantize(weights, QuantConfig("per_channel"))
    assert q.scales.shape == (8,)
    assert (np.abs(q.symbols.reshape(8, -1)).max(axis=1) == 127).all()
    error = dequantize(q.symbols, q.scales) - weights.numpy()
    assert (np.abs(error) <= q.scales.reshape(8, 1, 1, 1) / 2 + 1e-7).all()


def test_int8_quantization_error_is_small():
    weights = torch.randn(64, 64)
    q = quantize(weights, QuantConfig())
    assert snr_db(weights, dequantize(q.symbols, q.scales)) > 35


def test_fewer_bits_means_fewer_levels():
    q = quantize(torch.randn(32, 32), QuantConfig(bits=4))
    assert np.abs(q.symbols).max() == 7


def test_all_zero_tensor_and_zero_channels_come_back_as_zero():
    weights = torch.zeros(4, 5)
    weights[1] = 1.0
    for granularity in ("per_tensor", "per_channel"):
        q = quantize(weights, QuantConfig(granularity))
        assert np.array_equal(dequantize(q.symbols, q.scales), weights.numpy())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(bad):
    weights = torch.ones(3, 3)
    weights[1, 1] = bad
    with pytest.raises(InputError, match="layer1.conv.weight"):
        quantize(weights, QuantConfig(), "layer1.conv.weight")


def test_invalid_config_is_refused():
    with pytest.raises(InputError):
        QuantConfig("per_row")
    with pytest.raises(InputError):
        QuantConfig(bits=11)


@pytest.mark.parametrize("arrangement", ["rows", "kernel_blocks"])
@pytest.mark.parametrize("shape", [(16, 3, 3, 3), (10, 64), (1, 1), (4, 2, 5, 1), (2, 3, 3, 3, 3)])
def test_matrix_view_round_trips(arrangement, shape):
    symbols = np.arange(np.prod(shape)).reshape(shape).astype(np.int8)
    matrix = layout.as_matrix(symbols, arrangement)
    assert matrix.shape == layout.matrix_shape(shape, arrangement)
    assert np.array_equal(layout.from_matrix(matrix, shape, arrangement), symbols)


def test_kernel_blocks_keep_each_kernel_as_a_block():
    symbols = np.arange(2 * 3 * 3 * 3).reshape(2, 3, 3, 3).astype(np.int8)
    matrix = layout.as_matrix(symbols, "kernel_blocks")
    assert np.array_equal(matrix[3:6, 6:9], symbols[1, 2])


def _assert_valid_packing(shapes, limits):
    packing = layout.pack(shapes, limits)
    used = {}
    for index, ((rows, cols), regions) in enumerate(zip(shapes, packing.regions)):
        covered = np.zeros((rows, cols), dtype=int)
        for r in regions:
            width, height = packing.frame_sizes[r.frame]
            assert r.x % limits.block_size == 0 and r.y % limits.block_size == 0
            assert r.x + r.width <= width and r.y + r.height <= height
            assert width <= limits.max_width and height <= limits.max_height
            assert width % 2 == 0 and height % 2 == 0
            covered[r.row : r.row + r.height, r.col : r.col + r.width] += 1
            block = used.setdefault(r.frame, np.zeros((height, width), dtype=int))
            block[r.y : r.y + r.height, r.x : r.x + r.width] += 1
        assert (covered == 1).all(), f"matrix {index} not covered exactly once"
    assert all((block <= 1).all() for block in used.values()), "regions overlap"
    return packing


def test_packing_puts_small_tensors_together_on_block_boundaries():
    limits = layout.FrameLimits(block_size=16, min_size=16, max_width=16384, max_height=16384)
    shapes = [(16, 27), (16, 144), (32, 288), (10, 64), (1, 1), (7, 13)]
    packing = _assert_valid_packing(shapes, limits)
    assert len(packing.frame_sizes) == 1


def test_matrices_wider_than_the_codec_allows_are_tiled():
    limits = layout.FrameLimits(block_size=16, min_size=16, max_width=16384, max_height=16384)
    packing = _assert_valid_packing([(3, 20000), (5000, 40)], limits)
    assert len(packing.regions[0]) == 5  # 20000 columns in tiles of at most 4096


def test_render_and_extract_round_trip():
    limits = layout.FrameLimits(block_size=64, min_size=64, max_width=8192, max_height=8192)
    rng = np.random.default_rng(0)
    matrices = [
        rng.integers(-128, 128, size=shape, dtype=np.int16).astype(np.int8) for shape in [(3, 5000), (70, 9), (1, 1)]
    ]
    packing = layout.pack([m.shape for m in matrices], limits)
    frames = dict(enumerate(layout.render(packing, matrices)))
    for matrix, regions in zip(matrices, packing.regions):
        assert np.array_equal(layout.extract(frames, regions, *matrix.shape), matrix)


def test_fixed_step_quantizes_every_tensor_on_the_same_grid_without_clipping():
    weights = torch.tensor([[0.05, -0.031, 0.0], [0.2, 0.0, 0.01]])
    q = quantize(weights, QuantConfig(step=0.01))
    assert q.scales.tolist() == [pytest.approx(0.01)]
    assert q.symbols.tolist() == [[5, -3, 0], [20, 0, 1]]
    wide = quantize(torch.tensor([[5.0, -1.0]]), QuantConfig(step=0.01))  # would need 500 levels
    assert wide.scales[0] == pytest.approx(5.0 / 127) and wide.symbols.tolist() == [[127, -25]]
    with pytest.raises(InputError):
        QuantConfig(step=0.0)


def test_fixed_step_coarsens_only_the_rows_that_hold_outliers():
    # Row 1 would need 500 levels; rows of 5 weights are long enough to pay for a scale each.
    weights = torch.nn.functional.pad(torch.tensor([[0.05, -0.031], [5.0, -1.0], [0.2, 0.01]]), (0, 3))
    q = quantize(weights, QuantConfig(step=0.01))
    assert q.scales.tolist() == pytest.approx([0.01, 5.0 / 127, 0.01])
    assert q.symbols.tolist() == [[5, -3, 0, 0, 0], [127, -25, 0, 0, 0], [20, 1, 0, 0, 0]]
    within = quantize(weights[[0, 2]], QuantConfig(step=0.01))
    assert within.scales.tolist() == [pytest.approx(0.01)]  # one scale where no row needs more


@pytest.mark.parametrize("config", [QuantConfig(step=0.01), QuantConfig("per_channel")], ids=["step", "per_channel"])
def test_rows_too_short_to_pay_for_a_scale_share_one(config):
    # A scale per row costs 4 bytes: for rows of 4 weights or fewer it would cost more than their symbols.
    weights = torch.tensor([[0.05], [5.0], [0.2], [-0.7]]) * torch.ones(4, 4)  # row 1 beyond 127 steps
    short = quantize(weights, config)
    assert short.scales.tolist() == [pytest.approx(5.0 / 127)] and short.granularity == "per_tensor"
    longer = quantize(torch.cat([weights, weights[:, :1]], dim=1), config)  # 5 weights a row: a scale each
    assert len(longer.scales) == 4 and longer.granularity == "per_channel"
    one_row = quantize(weights[:1], QuantConfig("per_channel"))
    assert one_row.granularity == "per_channel" and len(one_row.scales) == 1


def test_entropy_bits_counts_whole_array():
    # Four equally frequent symbols, including both int8 ends: 2 bits each.
    symbols = np.array([-128, -1, 0, 127] * 16, dtype=np.int8)
    assert entropy_bits(symbols) == pytest.approx(2 * 64)
    assert entropy_bits(np.zeros(10, dtype=np.int8)) == 0.0
