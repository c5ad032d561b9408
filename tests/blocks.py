"""Quantization blocks for tests: a uniform block, and the bits each layer gets under a block."""

from __future__ import annotations

from typing import Any

from potstill.quantize.schemes import FLOAT_BITS, LAYER_LINEARS


def uniform_block(bits: int, group_size: int = 64, mode: str = "affine") -> dict[str, Any]:
    """The `quantization` block of a uniform scheme over all Linear layers."""
    return {"bits": bits, "group_size": group_size, "mode": mode}


def layer_bits(block: dict[str, Any], num_layers: int) -> list[int]:
    """Bits of each layer's Linear weights under a block (16: float); mixed layers show the most."""

    def entry_bits(path: str) -> int:
        entry = block.get(path)
        if entry is False:
            return FLOAT_BITS
        return (
            int(entry["bits"]) if isinstance(entry, dict) and "bits" in entry else int(block.get("bits", 4))
        )

    return [max(entry_bits(f"layers.{i}.{name}") for name in LAYER_LINEARS) for i in range(num_layers)]
