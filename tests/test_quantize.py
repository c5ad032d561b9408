"""Quantization blocks, per-module overrides, and the CPU (dequantize + BLAS) execution path."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from potstill.distill import quantize
from potstill.distill.bert import BertConfig, BertEncoder

CFG = BertConfig(
    vocab_size=40,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=32,
)


def _kinds(model: nn.Module) -> dict[str, str]:
    return {name: type(m).__name__ for name, m in model.named_modules() if "Linear" in type(m).__name__}


def _linear_names() -> list[str]:
    # Taken from the float model, so the tests follow the encoder's module layout (e.g. fused qkv).
    names = sorted(n for n, m in BertEncoder(CFG).named_modules() if isinstance(m, nn.Linear))
    assert len(names) >= 3 * CFG.num_hidden_layers  # attention out, FFN in, FFN out at least
    return names


def test_uniform_block_validates_bits_and_group_size():
    assert quantize.uniform_block(4) == {"bits": 4, "group_size": 64, "mode": "affine"}
    assert quantize.uniform_block(8, 32) == {"bits": 8, "group_size": 32, "mode": "affine"}
    with pytest.raises(ValueError, match=r"bits=7 is not supported; use one of \(2, 3, 4, 5, 6, 8\)"):
        quantize.uniform_block(7)
    with pytest.raises(ValueError, match=r"group_size=16 is not supported; use one of"):
        quantize.uniform_block(4, 16)


def test_apply_quantizes_every_linear_and_nothing_else():
    model = BertEncoder(CFG)
    quantize.apply(model, quantize.uniform_block(4, 32))
    kinds = _kinds(model)
    assert sorted(kinds) == _linear_names() and set(kinds.values()) == {"QuantizedLinear"}
    quantized = [m for m in model.modules() if isinstance(m, nn.QuantizedLinear)]
    assert all(m.bits == 4 and m.group_size == 32 for m in quantized)
    assert type(model.embeddings.word_embeddings) is nn.Embedding
    assert type(model.embeddings.norm) is nn.LayerNorm


def test_per_module_entries_keep_float_or_change_bits():
    names = _linear_names()
    keep, eight = names[0], names[-1]
    model = BertEncoder(CFG)
    quantize.apply(model, {**quantize.uniform_block(4, 64), keep: False, eight: {"bits": 8}})
    kinds = _kinds(model)
    assert kinds.pop(keep) == "Linear"
    assert set(kinds.values()) == {"QuantizedLinear"}
    modules = dict(model.named_modules())
    assert modules[eight].bits == 8
    assert {modules[n].bits for n in names[1:-1]} == {4}


def test_use_cpu_kernels_swaps_every_quantized_linear():
    names = _linear_names()
    model = BertEncoder(CFG)
    quantize.apply(model, {**quantize.uniform_block(8, 64), names[1]: False})
    assert quantize.use_cpu_kernels(model) == len(names) - 1
    kinds = _kinds(model)
    assert kinds.pop(names[1]) == "Linear"
    assert set(kinds.values()) == {"CpuQuantizedLinear"}
    assert quantize.use_cpu_kernels(model) == 0  # already swapped


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("bias", [True, False])
def test_cpu_quantized_linear_matches_mlx_quantized_matmul(bits, bias):
    mx.random.seed(3)
    linear = nn.Linear(128, 96, bias=bias)
    x = mx.random.normal((5, 7, 128))
    q = nn.QuantizedLinear.from_linear(linear, group_size=32, bits=bits)
    want = np.array(q(x))  # MLX's own quantized kernel
    q.__class__ = quantize.CpuQuantizedLinear
    got = np.array(q(x))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The quantization decides the numbers: 4 bits moves them more than 8 bits.
    error = np.abs(got - np.array(linear(x))).max()
    assert (0.0 < error < 0.05) if bits == 8 else (0.02 < error < 0.5)
