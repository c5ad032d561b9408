"""Training targets: the teacher's embeddings PCA'd to the model's dims, or a round-1 model's own.

The target PCA is fitted on the training split only and saved with the run, so the targets can
be rebuilt. Fitting holds the training rows in memory: rows x width float32 (217,000 x 384 is
333 MB), plus a float64 copy while scikit-learn fits.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from potstill.distill.pca import PCA, fit_pca
from potstill.vectors import normalise


def fit_target_pca(chunks: Iterable[np.ndarray], dims: int) -> PCA:
    """The target PCA of all rows of `chunks` (the training split, shard by shard)."""
    rows = [np.asarray(c, dtype=np.float32) for c in chunks]
    if sum(len(r) for r in rows) < 2:
        raise ValueError("the target PCA needs at least 2 training sentences; featurize more text")
    return fit_pca(np.concatenate(rows), dims, what="number of training sentences")


def save_pca(pca: PCA, path: Path) -> None:
    save_file(
        {
            "mean": pca.mean,
            "components": pca.components,
            "explained_variance_ratio": pca.explained_variance_ratio.astype(np.float32),
        },
        str(path),
    )


def table_targets(table: np.ndarray, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """A static model's sentence embeddings (mean of its rows) for a batch's count matrix."""
    used = counts[:, : len(rows)]
    return (used @ table[rows]) / np.maximum(used.sum(axis=1, keepdims=True), 1.0)


def mix(teacher: np.ndarray, own: np.ndarray, alpha: float) -> np.ndarray:
    """Born-again targets: alpha * teacher + (1 - alpha) * round-1 model, each unit length."""
    if alpha == 0.0:
        return own
    if alpha == 1.0:
        return teacher
    return (alpha * normalise(teacher) + (1.0 - alpha) * normalise(own)).astype(np.float32)
