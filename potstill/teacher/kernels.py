"""The encoder's element-wise kernels, written for what MLX's CPU backend runs fast: GELU (erf)
and the softmax's exponential. Only multiplies, adds, divides and `abs`.

What MLX 0.32's CPU `mx.compile` does with an element-wise graph (measured on 2M float32s, one
core; BENCHMARKS.md, "Teacher speed"):
- it fuses the graph into one JIT-built C++ loop, up to 11 ops deep; a deeper graph is cut into
  several kernels, and every extra pass over memory costs about a millisecond;
- a contiguous loop without branches is vectorised (ten ops: ~1 ms). `maximum`, `minimum` and
  `clip` test for NaN with a branch, which keeps the whole loop scalar (one clip: 1.0 -> 9.6 ms);
- `exp`, `erf` and `tanh` are scalar library calls (~20 ns an element).
So the clamps here are built from `abs`, the polynomials are evaluated by Estrin's scheme (shallow)
instead of Horner's, and each kernel is cut by hand into pieces of at most 11 ops in depth.
"""

from __future__ import annotations

import mlx.core as mx

# Rational approximation of erf on [-4, 4] (the one XLA and Eigen use for float32; max abs error
# ~5e-7): erf(y) = y * P(y^2) / Q(y^2), coefficients highest power first.
_ERF_NUM = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_DEN = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)
_SQRT1_2 = 0.7071067811865476
ERF_LIMIT = 4.0  # erf(4) = 1 - 1.5e-8: 1.0 in float32
EXP_FLOOR = -80.0  # exp(-80) = 1.8e-35: still a normal float32, so no slow denormal arithmetic


def relu_sum(v: mx.array) -> mx.array:
    """2 * max(v, 0) without a branch: exactly 0 where v <= 0."""
    return v + mx.abs(v)


def clamp(x: mx.array, limit: float) -> mx.array:
    """`x` clipped to [-limit, limit], branch-free; exact inside the interval."""
    return x + 0.5 * (relu_sum(-x - limit) - relu_sum(x - limit))


def _erf_input(x: mx.array) -> mx.array:
    return clamp(x * _SQRT1_2, ERF_LIMIT)


def _gelu_from(x: mx.array, y: mx.array) -> mx.array:
    """0.5 x (1 + erf(y)) for y = x / sqrt(2) clipped to +-4; 10 ops deep."""
    n, d = _ERF_NUM, _ERF_DEN
    t = y * y
    t2 = t * t
    t4 = t2 * t2
    p = (n[5] * t + n[6]) + t2 * (n[3] * t + n[4]) + t4 * ((n[1] * t + n[2]) + n[0] * t2)
    q = (d[3] * t + d[4]) + t2 * (d[1] * t + d[2]) + t4 * d[0]
    return (0.5 * x) * (1.0 + y * p / q)


# Not shapeless: MLX's CPU shapeless kernels read every constant through a broadcast and ran 2x
# slower; a new shape re-traces (about a millisecond) and reuses the same JIT-built kernel.
_erf_input_kernel = mx.compile(_erf_input)
_gelu_from_kernel = mx.compile(_gelu_from)


def gelu_erf(x: mx.array) -> mx.array:
    """Exact (erf) GELU as BERT defines it, to float32 accuracy, in two vectorised kernels."""
    return _gelu_from_kernel(x, _erf_input_kernel(x))


def _relu(x: mx.array) -> mx.array:
    """max(x, 0), vectorised (`nn.relu` is a `maximum`, which branches)."""
    return 0.5 * relu_sum(x)


relu = mx.compile(_relu)


def _exp_root(x: mx.array) -> mx.array:
    """exp(x / 128) for x <= 0 (floored at EXP_FLOOR) by its Taylor series in Estrin form; degree 6
    is exact to float32 on [-0.63, 0]."""
    z = x * (1.0 / 128) + relu_sum(EXP_FLOOR - x) * (0.5 / 128)
    z2 = z * z
    z4 = z2 * z2
    return (1.0 + z) + z2 * (1 / 2 + z * (1 / 6)) + z4 * ((1 / 24 + z * (1 / 120)) + z2 * (1 / 720))


def _pow128(p: mx.array) -> mx.array:
    for _ in range(7):
        p = p * p
    return p


_exp_root_kernel = mx.compile(_exp_root)
_pow128_kernel = mx.compile(_pow128)


def exp_nonpositive(x: mx.array) -> mx.array:
    """exp(x) for x <= 0: exp(x / 128) squared 7 times; relative error < 2e-5 (the squarings
    multiply the series' error by 128), and exp(-80) ~ 0 for anything below -80. The floor's
    arithmetic is exact for |x| up to ~1e5: inputs must stay above that (the attention mask is
    -1e4, as BERT's own was)."""
    return _pow128_kernel(_exp_root_kernel(x))


def softmax(scores: mx.array) -> mx.array:
    """Softmax over the last axis through `exp_nonpositive`: 4x faster than `mx.softmax` on CPU.
    A row's relative error is the same smooth function of each score, so normalising cancels most
    of it (the parity tests hold it to a min cosine of 0.99999 against PyTorch)."""
    z = exp_nonpositive(scores - mx.max(scores, axis=-1, keepdims=True))
    return z * mx.reciprocal(mx.sum(z, axis=-1, keepdims=True))
