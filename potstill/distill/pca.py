"""PCA of the token table: centre, eigendecompose the covariance, keep the top `dims`, fix signs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PCA:
    """A fitted PCA: `transform(x) = (x - mean) @ components.T`."""

    mean: np.ndarray  # (width,)
    components: np.ndarray  # (dims, width)
    explained_variance_ratio: np.ndarray  # (dims,)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T).astype(np.float32)


def fit_pca(x: np.ndarray, dims: int) -> PCA:
    """Fit PCA to rows of `x`. Each component's sign makes its largest-magnitude score positive,
    so the result does not depend on the eigensolver's sign choice."""
    n, width = x.shape
    if dims > width:
        raise ValueError(f"dims={dims} exceeds the teacher width {width}; use dims <= {width}")
    if dims > n:
        raise ValueError(f"dims={dims} exceeds the vocabulary size {n}; use dims <= {n}")
    if dims < 1:
        raise ValueError(f"dims={dims} must be >= 1")
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    centred = x64 - mean
    cov = centred.T @ centred / max(n - 1, 1)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1][:dims]
    components = eigvecs[:, order].T
    scores = centred @ components.T
    signs = np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(dims)])
    signs[signs == 0] = 1.0
    components = components * signs[:, None]
    total = np.clip(eigvals, 0, None).sum()
    ratio = np.clip(eigvals[order], 0, None) / total if total > 0 else np.zeros(dims)
    return PCA(mean.astype(np.float32), components.astype(np.float32), ratio)
