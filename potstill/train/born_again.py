"""The born-again round (Furlanello et al. 2018): a fresh model, initialised from the same
distilled base, learns the round-1 model's own sentence embeddings (optionally mixed with the
teacher's). The round-1 model is a plain table, so its targets cost one gather per batch."""

from __future__ import annotations

import numpy as np

from potstill.distill.pca import PCA
from potstill.train.data import Batch
from potstill.train.loop import TargetFn
from potstill.train.targets import mix, table_targets


def teacher_targets(pca: PCA) -> TargetFn:
    """Round 1: the teacher's embeddings in the target PCA space."""
    return lambda b: pca.transform(b.teacher)


def born_again_targets(pca: PCA, round1: np.ndarray, alpha: float) -> TargetFn:
    """Round 2: alpha * teacher + (1 - alpha) * round-1 model (the folded table `round1`)."""

    def fn(b: Batch) -> np.ndarray:
        own = table_targets(round1, b.rows, b.counts).astype(np.float32)
        return mix(pca.transform(b.teacher), own, alpha)

    return fn
