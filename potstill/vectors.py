"""Unit-length rows, for numpy and MLX arrays alike: one formula, written once."""

from __future__ import annotations

from typing import TypeVar

import mlx.core as mx
import numpy as np

A = TypeVar("A", np.ndarray, mx.array)

EPS = 1e-12  # a zero row stays zero


def normalise(x: A) -> A:
    """`x` scaled so each row (last axis) has unit length: x / max(|x|, 1e-12)."""
    if isinstance(x, mx.array):
        return x / mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), EPS)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), EPS)
