"""The encoder's branch-free element-wise kernels against float64 references."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from potstill.teacher import kernels

try:
    from scipy.special import erf
except ImportError:  # pragma: no cover - scipy comes with the eval extra
    erf = np.vectorize(math.erf, otypes=[np.float64])


def _np(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32), dtype=np.float64)


def test_clamp_is_exact_inside_and_clips_outside():
    x = np.array([0.0, 1e-30, -1e-30, 1e-3, -3.999, 4.0, -4.0, 4.5, -7.0, 1e6, -1e6], dtype=np.float32)
    out = np.array(kernels.clamp(mx.array(x), 4.0))
    inside = np.abs(x) <= 4.0
    assert np.array_equal(out[inside], x[inside])  # bit-exact, tiny values included
    np.testing.assert_allclose(out[~inside], np.sign(x[~inside]) * 4.0, rtol=0, atol=1e-6)


def test_gelu_matches_the_exact_erf_gelu():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 3, 200_000), [0.0, 5.65, 5.66, 5.7, 30.0, -30.0, 1e4, -1e4]]).astype(
        np.float32
    )
    x64 = x.astype(np.float64)
    exact = 0.5 * x64 * (1.0 + erf(x64 / math.sqrt(2.0)))
    out = _np(kernels.gelu_erf(mx.array(x)))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, exact, rtol=2e-6, atol=2e-6)


def test_gelu_keeps_shape_and_dtype():
    x = mx.random.normal((2, 3, 8)).astype(mx.float16)
    y = kernels.gelu_erf(x)
    assert y.shape == (2, 3, 8) and y.dtype == mx.float16


def test_exp_nonpositive_is_accurate_and_vanishes_far_below():
    x = np.concatenate([-np.abs(np.random.default_rng(1).normal(0, 8, 100_000)), [0.0, -1e-8]]).astype(
        np.float32
    )
    out = _np(kernels.exp_nonpositive(mx.array(x)))
    ref = np.exp(x.astype(np.float64))
    keep = x > -20
    assert np.max(np.abs(out[keep] - ref[keep]) / ref[keep]) < 2e-5
    assert out[-2] == 1.0
    far = _np(kernels.exp_nonpositive(mx.array(np.array([-80.0, -200.0, -1e4, -3e4], dtype=np.float32))))
    assert np.all(far < 2e-35) and np.all(far >= 0.0)


def test_softmax_matches_float64_and_ignores_masked_keys():
    rng = np.random.default_rng(2)
    scores = rng.normal(0, 4, (4, 3, 7, 9)).astype(np.float32)
    scores[..., 6:] += -1e4  # the encoder's attention mask
    ref = np.exp(scores.astype(np.float64) - scores.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    out = _np(kernels.softmax(mx.array(scores)))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    assert np.all(out[..., 6:] < 1e-30)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("values", [[-2.0, -1e-20, 0.0, 1e-20, 3.5], [7.0]])
def test_relu(values):
    x = np.array(values, dtype=np.float32)
    assert np.array_equal(np.array(kernels.relu(mx.array(x))), np.maximum(x, 0.0))
