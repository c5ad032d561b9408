"""Quantized layers at load time: apply a `quantization` config block, and compute on CPU.

A block is `config.json["quantization"]` (mlx-lm's convention): global `bits`, `group_size`,
`mode`, plus per-module overrides keyed by module path (`{"bits", "group_size", "mode"}`, or
`false` for float). `Teacher.load` re-applies a saved block exactly; `potstill.quantize` makes
blocks from schemes.

On CPU, MLX's quantized matmul kernel is ~2 GFLOP/s (FINDINGS.md), so quantized layers compute
`x @ dequantize(w).T` through the fast BLAS instead; the quantization still decides the numbers.
GPU backends keep MLX's quantized kernels.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

SETTING_KEYS = ("bits", "group_size", "mode")


class SchemeError(ValueError):
    """A quantization scheme that cannot be applied; the message names the bad value and the fix."""


class CpuQuantizedLinear(nn.QuantizedLinear):
    """A `QuantizedLinear` that computes through its dequantized weight (fast on CPU BLAS)."""

    def __call__(self, x: mx.array) -> mx.array:
        w = mx.dequantize(
            self["weight"],
            self["scales"],
            self.get("biases"),
            group_size=self.group_size,
            bits=self.bits,
            mode=self.mode,
        )
        # mx modes dequantize to bfloat16, whose CPU matmul is slow: compute in the input's dtype.
        y = x @ w.astype(x.dtype).T
        return y + self["bias"] if "bias" in self else y


def apply(model: nn.Module, block: dict[str, Any]) -> None:
    """Quantize `model` in place as a `quantization` config block says.

    Only Linear layers are quantized unless a per-module entry names another module; an entry
    `{path: false}` keeps that module in float; an entry's missing keys come from the global ones.
    """
    glob = {
        "bits": int(block.get("bits", 4)),
        "group_size": int(block.get("group_size", 64)),
        "mode": str(block.get("mode", "affine")),
    }
    modules = dict(model.named_modules())
    unknown = [k for k, v in block.items() if (v is False or isinstance(v, dict)) and k not in modules]
    if unknown:
        raise SchemeError(f"quantization entries name no module of this model: {unknown[:5]}")

    def predicate(path: str, module: nn.Module) -> bool | dict[str, Any]:
        entry = block.get(path)
        if entry is False:
            return False
        if isinstance(entry, dict):
            return {k: entry.get(k, glob[k]) for k in SETTING_KEYS}
        return isinstance(module, nn.Linear)

    try:
        nn.quantize(model, class_predicate=predicate, **glob)  # type: ignore[arg-type]
    except ValueError as e:  # MLX's message names the unsupported bits, group size or mode
        setting = " ".join(f"{k}={v}" for k, v in glob.items())
        raise SchemeError(f"cannot quantize with {setting} (or a per-layer setting): {e}") from e


def quantize_model(model: nn.Module, block: dict[str, Any], dtype: mx.Dtype = mx.float32) -> None:
    """Quantize a float model as a saved folder would hold it: from float16 weights (so scales,
    biases and the float layers are float16 numbers), then computing in `dtype`."""
    model.set_dtype(mx.float16)
    apply(model, block)
    model.set_dtype(dtype)


def use_cpu_kernels(model: nn.Module) -> int:
    """Make every QuantizedLinear compute through dequantized weights; returns how many."""
    count = 0
    for _, module in model.named_modules():
        if type(module) is nn.QuantizedLinear:
            # Same parameters and attributes, another __call__: swapping the class keeps the
            # weights in place (no re-quantization, no copy).
            module.__class__ = CpuQuantizedLinear
            count += 1
    return count
