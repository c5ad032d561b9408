"""Cosine distance between each prediction and its target."""

from __future__ import annotations

import mlx.core as mx


def cosine(pred: mx.array, target: mx.array) -> mx.array:
    """Mean of 1 - cos(pred_i, target_i)."""
    num = (pred * target).sum(axis=-1)
    den = mx.maximum(mx.linalg.norm(pred, axis=-1) * mx.linalg.norm(target, axis=-1), 1e-12)
    return (1.0 - num / den).mean()
