"""The trainable static model: unit token rows, a per-token weight, mean pooling, a linear head.

    pooled(s) = head( sum_t w[t] * E[t] / n_tokens(s) ),   head(x) = x @ W.T + b

A batch touches a few thousand of the table's rows, so a step works on those rows only: the batch
is a count matrix C (sentences x touched rows) and pooling is `(C * w) @ E / n`, three small BLAS
matmuls forward and back instead of a gather whose backward scatters into the whole table.

Mean pooling is linear, so the head folds into the table exactly:
`table[t] = (w[t] * E[t]) @ W.T + b` gives model2vec's mean of rows == pooled(s). The saved table
alone reproduces the trained model's embeddings (model2vec normalises them, as training does).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from potstill.vectors import normalise

# parameters with one row per token (updated sparsely) and dense ones
ROW_PARAMS = ("embeddings", "weights")
DENSE_PARAMS = ("head_weight", "head_bias")
HEAD_RIDGE = 1e-3  # fit_head: the ridge, relative to the mean eigenvalue of the pooled scatter


@dataclass
class StaticTrainModel:
    """All parameters as float32 numpy arrays; a step gathers the rows it needs."""

    embeddings: np.ndarray  # (rows, dims), unit rows at the start
    weights: np.ndarray  # (rows,), the rows' norms at the start (they carry the SIF weighting)
    head_weight: np.ndarray  # (dims, dims)
    head_bias: np.ndarray  # (dims,)

    @classmethod
    def from_table(cls, table: np.ndarray) -> StaticTrainModel:
        norms = np.linalg.norm(table, axis=1).astype(np.float32)
        unit = normalise(table).astype(np.float32)
        dims = table.shape[1]
        return cls(unit, norms, np.eye(dims, dtype=np.float32), np.zeros(dims, np.float32))

    def params(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in (*ROW_PARAMS, *DENSE_PARAMS)}

    def load(self, params: dict[str, np.ndarray]) -> None:
        for name in (*ROW_PARAMS, *DENSE_PARAMS):
            setattr(self, name, np.array(params[name], dtype=np.float32, order="C"))

    def gather(self, rows: np.ndarray, padded: int) -> dict[str, mx.array]:
        """The parameters a batch needs: its rows (zero-padded to `padded`) and the head."""
        return gather_rows(self.params(), rows, padded)

    def fold(self) -> np.ndarray:
        """The plain table whose mean over a sentence's tokens equals this model's output."""
        rows = self.weights[:, None] * self.embeddings
        return (rows @ self.head_weight.T + self.head_bias).astype(np.float32)


def gather_rows(params: dict[str, np.ndarray], rows: np.ndarray, padded: int) -> dict[str, mx.array]:
    """Row parameters restricted to `rows` (zero rows up to `padded`), dense ones whole, as MLX.

    The keys always come in the same order: `mx.compile` flattens dicts in insertion order, so a
    dict loaded from a checkpoint (sorted keys) must not change the order a compiled step sees."""
    out = {}
    for name in (*ROW_PARAMS, *DENSE_PARAMS):
        value = params[name]
        if name in ROW_PARAMS:
            sub = np.zeros((padded, *value.shape[1:]), dtype=np.float32)
            sub[: len(rows)] = value[rows]
            out[name] = mx.array(sub)
        else:
            out[name] = mx.array(value)
    return out


def scatter_rows(params: dict[str, np.ndarray], sub: dict[str, mx.array], rows: np.ndarray) -> None:
    """Write a step's results back: row parameters into their rows, dense ones whole (in place)."""
    for name, value in sub.items():
        if name in ROW_PARAMS:
            params[name][rows] = np.asarray(value)[: len(rows)]
        else:
            params[name][...] = np.asarray(value)


def pool(params: dict[str, mx.array], counts: mx.array) -> mx.array:
    """Weighted mean of the batch's rows; `counts[i, j]` = occurrences of row j in sentence i."""
    summed = (counts * params["weights"][None, :]) @ params["embeddings"]
    return summed / mx.maximum(counts.sum(axis=1, keepdims=True), 1.0)


def forward(params: dict[str, mx.array], counts: mx.array) -> mx.array:
    return pool(params, counts) @ params["head_weight"].T + params["head_bias"]


def fit_head(
    pooled: np.ndarray, targets: np.ndarray, ridge: float = HEAD_RIDGE
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge head (W, b) with pooled @ W.T + b ~ targets: starts training from the best linear map
    between the base table's space and the targets' PCA space.

    The ridge (`ridge` x the mean eigenvalue of the pooled scatter) keeps W small along the
    directions the base barely spans. A table at the teacher's full width (384 of MiniLM's 384)
    has some: plain least squares then put weights of ~1e6 on them, and the first AdamW steps,
    which move every coordinate by about lr, blew the loss up (5.85, from 0.19)."""
    x = pooled.astype(np.float64)
    y = targets.astype(np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    scatter = xc.T @ xc
    lam = ridge * float(np.trace(scatter)) / scatter.shape[0]
    w = np.linalg.solve(scatter + lam * np.eye(scatter.shape[0]), xc.T @ yc).T  # (targets, dims)
    bias = y_mean - w @ x_mean
    return np.ascontiguousarray(w, dtype=np.float32), bias.astype(np.float32)
