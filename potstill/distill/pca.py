"""PCA with scikit-learn: the token table in distill, the teacher's embeddings in train's targets.

One function, one sign rule. `fit_pca` runs `sklearn.decomposition.PCA` with the
`covariance_eigh` solver (the covariance of the centred rows, eigendecomposed: fast when rows far
outnumber the width) in float64. Signs follow scikit-learn's own rule (`svd_flip` with
`u_based_decision=False`): each component's largest-magnitude coefficient is positive, so the
result does not depend on the eigensolver's sign choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA as SklearnPCA


@dataclass(frozen=True)
class PCA:
    """A fitted PCA: `transform(x) = (x - mean) @ components.T`."""

    mean: np.ndarray  # (width,)
    components: np.ndarray  # (dims, width)
    explained_variance_ratio: np.ndarray  # (dims,)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T).astype(np.float32)


def fit_pca(x: np.ndarray, dims: int, what: str = "vocabulary size") -> PCA:
    """Fit a `dims`-component PCA to the rows of `x` (`what` names the rows in errors)."""
    n, width = x.shape
    if dims > width:
        raise ValueError(f"dims={dims} exceeds the teacher width {width}; use dims <= {width}")
    if dims > n:
        raise ValueError(f"dims={dims} exceeds the {what} {n}; use dims <= {n}")
    if dims < 1:
        raise ValueError(f"dims={dims} must be >= 1")
    if n < 2:
        raise ValueError(f"PCA needs at least 2 rows, got {n}")
    fitted = SklearnPCA(n_components=dims, svd_solver="covariance_eigh").fit(x.astype(np.float64))
    return PCA(
        fitted.mean_.astype(np.float32),
        fitted.components_.astype(np.float32),
        np.asarray(fitted.explained_variance_ratio_, dtype=np.float64),
    )
