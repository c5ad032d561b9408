"""Training losses; each takes (predictions, targets, negatives mask) and returns a scalar."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from potstill.train.losses.contrastive import contrastive
from potstill.train.losses.cosine import cosine
from potstill.train.losses.mse import mse

Loss = Callable[[mx.array, mx.array, mx.array], mx.array]


def get(name: str, temperature: float) -> Loss:
    """The loss called `name`; `temperature` applies to the contrastive loss."""
    if name == "contrastive":
        return lambda p, t, m: contrastive(p, t, m, temperature)
    if name == "cosine":
        return lambda p, t, m: cosine(p, t)
    if name == "mse":
        return lambda p, t, m: mse(p, t)
    raise ValueError(f"loss {name!r} is not known; use contrastive, cosine or mse")


def unit(x: mx.array) -> mx.array:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


__all__ = ["Loss", "contrastive", "cosine", "get", "mse", "unit"]
