"""Encode speed: sentences per second of each model on one fixed sample, in the same run.

The sample is drawn once per run (seeded) from the text columns of one task split (by default
the STSBenchmark test sentences), so static models and the teacher are timed on the same
sentences. Each model is warmed up on a spread of the sample (the teacher compiles one graph per
padded length), then the models are timed in turns, one pass each per round, until each has
`min_seconds` of passes; the best pass counts, because these machines are shared and noise only
ever slows a pass down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from potstill.eval.tasks import TaskData

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("sentence1", "sentence2", "text")


@dataclass(frozen=True)
class Speed:
    """One model's measured encode speed."""

    sentences: int
    best_seconds: float
    passes: int

    @property
    def per_second(self) -> float:
        """Sentences per second of the best pass."""
        return self.sentences / self.best_seconds if self.best_seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "sentences": self.sentences,
            "best_seconds": self.best_seconds,
            "passes": self.passes,
            "sentences_per_second": self.per_second,
        }


def sample_sentences(data: TaskData, n: int, seed: int = 0) -> list[str]:
    """Up to `n` distinct texts of the split `data.split` (all text columns), in a seeded order."""
    table = data.tables.get(data.split) or data.tables.get("queries") or {}
    texts: list[str] = []
    for column in TEXT_COLUMNS:
        texts.extend(table.get(column, []))
    unique = list(dict.fromkeys(t for t in texts if t.strip()))
    if not unique:
        raise ValueError(f"task {data.spec.name} split {data.split} has no texts to time")
    order = np.random.default_rng(seed).permutation(len(unique))
    return [unique[i] for i in order[:n]]


def measure(
    encoders: Sequence[Callable[[Sequence[str]], Any]],
    sentences: Sequence[str],
    *,
    min_seconds: float = 4.0,
    max_passes: int = 100,
    warmup: int = 128,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Speed]:
    """Time each `encode(sentences)`, interleaved: a warm-up of each on a spread of the sample,
    then rounds of one pass per model until each has `min_seconds` (or `max_passes`) of passes.

    Interleaving makes a burst of load on a shared machine hit every model alike, instead of
    whichever model was being timed then (timed one after another, the ratio of the same pair of
    models moved from run to run; BENCHMARKS.md, recipes section). A static model's best pass over
    2,000 sentences takes 29-37 ms (BENCHMARKS.md, recipes), so it gets up to 100 passes (4 s): with 20, its best pass still
    moved with the machine's load from run to run. `clock` reads seconds (the tests pass a fake one)."""
    if not sentences:
        raise ValueError("no sentences to time")
    step = max(1, len(sentences) // warmup)
    spread = list(sentences[::step])  # lengths (and the teacher's compiled shapes) vary
    for encode in encoders:
        encode(spread)
    n = len(encoders)
    best, total, passes = [float("inf")] * n, [0.0] * n, [0] * n
    while True:
        due = [i for i in range(n) if passes[i] < max_passes and (passes[i] == 0 or total[i] < min_seconds)]
        if not due:
            break
        for i in due:
            start = clock()
            encoders[i](sentences)
            seconds = clock() - start
            best[i] = min(best[i], seconds)
            total[i] += seconds
            passes[i] += 1
    return [Speed(len(sentences), best[i], passes[i]) for i in range(n)]
