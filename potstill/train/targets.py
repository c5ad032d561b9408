"""Training targets: the teacher's embeddings PCA'd to the model's dims, or a round-1 model's own.

The target PCA is fitted on the training split only (streamed: a running sum and scatter matrix,
so memory does not grow with the corpus) and saved with the run, so the targets can be rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from potstill.distill.pca import PCA


def fit_streaming_pca(chunks: Iterable[np.ndarray], dims: int) -> PCA:
    """PCA of all rows of `chunks` from their first and second moments. A component's sign makes
    its largest-magnitude coefficient positive (deterministic across eigensolvers)."""
    n = 0
    total: np.ndarray | None = None
    scatter: np.ndarray | None = None
    for chunk in chunks:
        x = chunk.astype(np.float64)
        if total is None:
            total = np.zeros(x.shape[1])
            scatter = np.zeros((x.shape[1], x.shape[1]))
        assert scatter is not None
        n += x.shape[0]
        total += x.sum(axis=0)
        scatter += x.T @ x
    if total is None or scatter is None or n < 2:
        raise ValueError("the target PCA needs at least 2 training sentences; featurize more text")
    width = total.shape[0]
    if dims > width:
        raise ValueError(f"dims={dims} exceeds the teacher width {width}")
    mean = total / n
    cov = (scatter - n * np.outer(mean, mean)) / (n - 1)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1][:dims]
    components = eigvecs[:, order].T
    signs = np.sign(components[np.arange(dims), np.argmax(np.abs(components), axis=1)])
    components = components * signs[:, None]
    total_var = np.clip(eigvals, 0, None).sum()
    ratio = np.clip(eigvals[order], 0, None) / total_var if total_var > 0 else np.zeros(dims)
    return PCA(mean.astype(np.float32), components.astype(np.float32), ratio)


def save_pca(pca: PCA, path: Path) -> None:
    save_file(
        {
            "mean": pca.mean,
            "components": pca.components,
            "explained_variance_ratio": pca.explained_variance_ratio.astype(np.float32),
        },
        str(path),
    )


def load_pca(path: Path) -> PCA:
    t = load_file(str(path))
    return PCA(t["mean"], t["components"], t["explained_variance_ratio"])


def table_targets(table: np.ndarray, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """A static model's sentence embeddings (mean of its rows) for a batch's count matrix."""
    used = counts[:, : len(rows)]
    return (used @ table[rows]) / np.maximum(used.sum(axis=1, keepdims=True), 1.0)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def mix(teacher: np.ndarray, own: np.ndarray, alpha: float) -> np.ndarray:
    """Born-again targets: alpha * teacher + (1 - alpha) * round-1 model, each unit length."""
    if alpha == 0.0:
        return own
    if alpha == 1.0:
        return teacher
    return (alpha * unit(teacher) + (1.0 - alpha) * unit(own)).astype(np.float32)
