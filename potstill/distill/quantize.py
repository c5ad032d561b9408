"""Quantized teacher weights: uniform schemes, save/load metadata, and CPU execution.

Quantization settings live in `config.json["quantization"]` (mlx-lm's convention): global
`bits`, `group_size`, `mode`, plus per-module overrides keyed by module path, so loading a saved
folder re-applies exactly what was saved. On CPU, MLX's quantized matmul kernel is ~2 GFLOP/s
(FINDINGS.md), so quantized layers compute `x @ dequantize(w).T` through the fast BLAS instead;
the quantization still decides the numbers. GPU backends keep MLX's quantized kernels.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

SUPPORTED_BITS = (2, 3, 4, 5, 6, 8)
SUPPORTED_GROUPS = (32, 64, 128)


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
        y = x @ w.T
        return y + self["bias"] if "bias" in self else y


def uniform_block(bits: int, group_size: int = 64, mode: str = "affine") -> dict[str, Any]:
    """The `quantization` config block of a uniform scheme over all Linear layers."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits} is not supported; use one of {SUPPORTED_BITS}")
    if group_size not in SUPPORTED_GROUPS:
        raise ValueError(f"group_size={group_size} is not supported; use one of {SUPPORTED_GROUPS}")
    return {"bits": bits, "group_size": group_size, "mode": mode}


def apply(model: nn.Module, block: dict[str, Any]) -> None:
    """Quantize `model` in place as a `quantization` config block says.

    Only Linear layers are quantized unless a per-module entry names another module; an entry
    `{path: false}` keeps that module in float.
    """

    def predicate(path: str, module: nn.Module) -> bool | dict[str, Any]:
        entry = block.get(path)
        if entry is False:
            return False
        if isinstance(entry, dict):
            return {k: entry[k] for k in ("bits", "group_size", "mode") if k in entry}
        return isinstance(module, nn.Linear)

    nn.quantize(
        model,
        group_size=int(block.get("group_size", 64)),
        bits=int(block.get("bits", 4)),
        mode=str(block.get("mode", "affine")),
        class_predicate=predicate,
    )


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
