"""Stored bits per weight of a (quantized) encoder: what a scheme costs, counted without weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from potstill.teacher.bert import BertConfig
from potstill.teacher.encoders import build
from potstill.teacher.quantized import apply


@dataclass(frozen=True)
class BitsReport:
    """Stored bits per weight: the encoder's Linear weights (quantization scales and biases
    included; Linear bias vectors and LayerNorms left out) and, on their own, the embeddings."""

    linear_weights: int
    linear_bits: int
    embedding_weights: int
    embedding_bits: int

    @property
    def linear_bpw(self) -> float:
        return self.linear_bits / max(self.linear_weights, 1)

    @property
    def embedding_bpw(self) -> float:
        return self.embedding_bits / max(self.embedding_weights, 1)


def _stored_bits(a: mx.array) -> int:
    """Bits of an array as saved: every float tensor is float16 in a quantized folder."""
    return a.size * (16 if mx.issubdtype(a.dtype, mx.floating) else 8 * a.itemsize)


def _module_bits(module: nn.Module) -> tuple[int, int]:
    """(weights it stands for, stored bits of weight + scales + biases) of a Linear/Embedding."""
    w = module["weight"]
    if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
        count = w.shape[0] * w.shape[1] * 32 // module.bits
        extra = [module["scales"], *([module["biases"]] if "biases" in module else [])]
        return count, _stored_bits(w) + sum(_stored_bits(a) for a in extra)
    return w.size, _stored_bits(w)


def count_bits(model: nn.Module) -> BitsReport:
    """Bits per weight of a (quantized) encoder; arrays are not evaluated, so a lazily built model
    costs nothing to count."""
    lin = [0, 0]
    emb = [0, 0]
    for path, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.QuantizedLinear)):
            target = lin
        elif isinstance(module, (nn.Embedding, nn.QuantizedEmbedding)) and path.startswith("embeddings."):
            target = emb
        else:
            continue
        n, bits = _module_bits(module)
        target[0] += n
        target[1] += bits
    return BitsReport(lin[0], lin[1], emb[0], emb[1])


def block_bits(config: BertConfig, block: dict[str, Any]) -> BitsReport:
    """Bits per weight a block gives an encoder of `config` (any family), without weights."""
    model = build(config)  # lazy: MLX computes no random init until evaluated
    model.set_dtype(mx.float16)
    apply(model, block)
    return count_bits(model)
