"""Weight error and ideal size: pure functions, checked against their definitions."""

import math

import numpy as np
import pytest

from vcwc.metrics import entropy_bits, error_stats, snr_db


def test_snr_db_definition_and_edge_cases():
    original = np.array([3.0, 4.0])
    assert snr_db(original, np.array([3.0, 4.5])) == pytest.approx(10 * math.log10(25 / 0.25))
    assert snr_db(original, original.copy()) == math.inf
    assert snr_db(np.zeros(3), np.zeros(3)) == math.inf
    assert snr_db(np.zeros(3), np.array([0.0, 1e-3, 0.0])) == -math.inf


def test_error_stats_in_blocks_equal_one_pass(monkeypatch):
    rng = np.random.default_rng(0)
    original = rng.standard_normal(10_000).astype(np.float32)
    noisy = original + rng.standard_normal(10_000).astype(np.float32) * 0.01
    whole = error_stats(original, noisy)
    monkeypatch.setattr("vcwc.metrics.BLOCK_ELEMENTS", 777)
    assert error_stats(original, noisy) == pytest.approx(whole)
    assert whole[1] == pytest.approx(float(np.abs(noisy.astype(np.float64) - original).max()))


def test_entropy_of_uniform_symbols_and_wide_ranges():
    assert entropy_bits(np.array([-1, 1, -1, 1])) == pytest.approx(4.0)
    assert entropy_bits(np.full(10, 7)) == 0.0
    assert entropy_bits(np.array([-500, 500], dtype=np.int16)) == pytest.approx(2.0)
