"""Mean squared error against the (PCA'd, unnormalised) targets: tokenlearn 0.2.1's loss."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def mse(pred: mx.array, target: mx.array) -> mx.array:
    """Mean over batch and dimensions of (pred - target)^2."""
    return nn.losses.mse_loss(pred, target, reduction="mean")
