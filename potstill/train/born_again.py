"""Born-again rounds (Furlanello et al. 2018): a fresh model, initialised from the same distilled
base, learns the previous round's own sentence embeddings (optionally mixed with the teacher's);
a further round does the same with that model. The previous model is a plain table, so its
targets cost one gather per batch."""

from __future__ import annotations

import numpy as np

from potstill.distill.pca import PCA
from potstill.train.data import Batch
from potstill.train.loop import TargetFn
from potstill.train.targets import mix, table_targets


def teacher_targets(pca: PCA) -> TargetFn:
    """Round 1: the teacher's embeddings in the target PCA space."""
    return lambda b: pca.transform(b.teacher)


def born_again_targets(pca: PCA, previous: np.ndarray, alpha: float) -> TargetFn:
    """A born-again round: alpha * teacher + (1 - alpha) * the previous round's model (its folded
    table `previous`)."""

    def fn(b: Batch) -> np.ndarray:
        own = table_targets(previous, b.rows, b.counts).astype(np.float32)
        return mix(pca.transform(b.teacher), own, alpha)

    return fn
