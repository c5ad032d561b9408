"""In-batch InfoNCE: each prediction must pick its own target among the batch's targets."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from potstill.vectors import normalise


def contrastive(pred: mx.array, target: mx.array, same: mx.array, temperature: float) -> mx.array:
    """Cross-entropy over cosine similarities / temperature, the diagonal being the positives.

    `same[i, j]` is 1 where texts i and j of the batch are equal (i != j): those targets are not
    negatives for each other, so they are masked out instead of pushed apart.
    """
    logits = (normalise(pred) @ normalise(target).T) / temperature
    logits = mx.where(same > 0, mx.array(-1e9, dtype=logits.dtype), logits)
    labels = mx.arange(pred.shape[0])
    return nn.losses.cross_entropy(logits, labels, reduction="mean")
