"""In-batch InfoNCE: each prediction must pick its own target among the batch's targets."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def contrastive(pred: mx.array, target: mx.array, same: mx.array, temperature: float) -> mx.array:
    """Cross-entropy over cosine similarities / temperature, the diagonal being the positives.

    `same[i, j]` is 1 where texts i and j of the batch are equal (i != j): those targets are not
    negatives for each other, so they are masked out instead of pushed apart.
    """
    p = pred / mx.maximum(mx.linalg.norm(pred, axis=-1, keepdims=True), 1e-12)
    t = target / mx.maximum(mx.linalg.norm(target, axis=-1, keepdims=True), 1e-12)
    logits = (p @ t.T) / temperature
    logits = mx.where(same > 0, mx.array(-1e9, dtype=logits.dtype), logits)
    labels = mx.arange(pred.shape[0])
    return nn.losses.cross_entropy(logits, labels, reduction="mean")
