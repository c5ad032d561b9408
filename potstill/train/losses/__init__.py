"""Training losses; each takes (predictions, targets, negatives mask) and returns a scalar.

The first len(predictions) targets are the predictions' own; any further rows (the rest of a
batch split between ranks) are more in-batch negatives for the contrastive loss, unused by the
others. The mask is (predictions, targets)."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from potstill.config import Choice
from potstill.train.losses.contrastive import contrastive
from potstill.train.losses.cosine import cosine
from potstill.train.losses.mse import mse

LossFn = Callable[[mx.array, mx.array, mx.array], mx.array]


class Loss(Choice):
    """The training loss."""

    CONTRASTIVE = "contrastive"  # in-batch InfoNCE
    COSINE = "cosine"
    MSE = "mse"  # tokenlearn 0.2.1's


def get(name: str, temperature: float) -> LossFn:
    """The loss called `name`; `temperature` applies to the contrastive loss."""
    if name == Loss.CONTRASTIVE:
        return lambda p, t, m: contrastive(p, t, m, temperature)
    if name == Loss.COSINE:
        return lambda p, t, m: cosine(p, t[: p.shape[0]])
    if name == Loss.MSE:
        return lambda p, t, m: mse(p, t[: p.shape[0]])
    raise ValueError(f"loss {name!r} is not known; use contrastive, cosine or mse")


__all__ = ["Loss", "LossFn", "contrastive", "cosine", "get", "mse"]
