"""Cosine distance between each prediction and its target."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def cosine(pred: mx.array, target: mx.array) -> mx.array:
    """Mean of 1 - cos(pred_i, target_i) (mlx's cosine similarity, with our 1e-12 floor)."""
    return 1.0 - nn.losses.cosine_similarity_loss(pred, target, axis=-1, eps=1e-12, reduction="mean")
