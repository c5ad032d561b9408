"""Scores of a run: per model and task (mteb's results), main scores, category means, dev score.

**The dev score** is the mean of three category means over the test splits: STS (STSBenchmark,
SICK-R; cosine Spearman), Classification (Banking77, Emotion, AmazonCounterfactual; accuracy)
and PairClassification (TwitterURLCorpus; max AP). SciFact NDCG@10 is reported beside it, not in
it. Scores are fractions here; reports show them x100.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from potstill.eval.speed import Speed
from potstill.eval.tasks import TaskSpec, TaskType

logger = logging.getLogger(__name__)

DEV_CATEGORIES: dict[str, tuple[str, ...]] = {
    "STS": ("STSBenchmark", "SICK-R"),
    "Classification": (
        "Banking77Classification",
        "EmotionClassification",
        "AmazonCounterfactualClassification",
    ),
    "PairClassification": ("TwitterURLCorpus",),
}
DEV_TASKS: tuple[str, ...] = tuple(t for tasks in DEV_CATEGORIES.values() for t in tasks)
BESIDE_DEV = "SciFact"  # NDCG@10, reported beside the dev score
# Scores reported next to a task's main score, by task type.
EXTRA_METRICS: dict[TaskType, tuple[str, ...]] = {TaskType.PAIR_CLASSIFICATION: ("cosine_ap",)}


class ScoreError(ValueError):
    """mteb's result lacks the metric a task folder names as its main score."""


def split_score(result: Mapping[str, Any], split: str, metric: str, task: str) -> float:
    """`metric` of one split of an mteb TaskResult dict, averaged over its subsets."""
    per_subset = result.get("scores", {}).get(split)
    if not per_subset:
        raise ScoreError(f"mteb returned no {split!r} scores for {task}")
    values = []
    for scores in per_subset:
        if metric not in scores:
            known = ", ".join(sorted(k for k, v in scores.items() if v is None or isinstance(v, float)))
            raise ScoreError(
                f"mteb gave no {metric!r} for {task}; set main_score in task.json to one of: {known}"
            )
        if scores[metric] is None:  # NaN in mteb's JSON: e.g. a correlation of constant similarities
            logger.warning("mteb's %s for %s is undefined (NaN); are the embeddings constant?", metric, task)
        values.append(float("nan") if scores[metric] is None else float(scores[metric]))
    return sum(values) / len(values)


@dataclass(frozen=True)
class DevSummary:
    """Category means and the dev score of one model (None where a dev task was not run)."""

    categories: dict[str, float | None]
    dev_score: float | None
    beside: float | None
    missing: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "categories": self.categories,
            "dev_score": self.dev_score,
            BESIDE_DEV: self.beside,
            "missing_tasks": list(self.missing),
        }


def dev_summary(main_scores: Mapping[str, float]) -> DevSummary:
    """The dev score from a model's main scores by task name (fractions, not x100)."""
    categories: dict[str, float | None] = {}
    for category, tasks in DEV_CATEGORIES.items():
        have = [main_scores[t] for t in tasks if t in main_scores]
        categories[category] = sum(have) / len(have) if len(have) == len(tasks) else None
    complete = [v for v in categories.values() if v is not None]
    dev = sum(complete) / len(complete) if len(complete) == len(categories) else None
    missing = tuple(t for t in DEV_TASKS if t not in main_scores)
    return DevSummary(categories, dev, main_scores.get(BESIDE_DEV), missing)


@dataclass
class TaskScore:
    """One model on one task: the main score, extras (e.g. cosine AP) and mteb's full result."""

    task: str
    type: str
    metric: str
    value: float
    extras: dict[str, float]
    seconds: float
    mteb: dict[str, Any]

    def get(self, metric: str) -> float | None:
        """The main score or an extra, by metric name."""
        return self.value if metric == self.metric else self.extras.get(metric)


@dataclass
class ModelScores:
    """Everything measured for one model."""

    label: str
    kind: str
    source: str
    dim: int
    size_bytes: int
    speed: Speed | None = None
    tasks: dict[str, TaskScore] = field(default_factory=dict)

    @property
    def main_scores(self) -> dict[str, float]:
        return {name: s.value for name, s in self.tasks.items()}

    @property
    def dev(self) -> DevSummary:
        return dev_summary(self.main_scores)


@dataclass
class EvalRun:
    """The outcome of `potstill eval`: tasks, models and their scores."""

    split: str
    tasks: list[TaskSpec]
    models: list[ModelScores]
    speed_task: str | None
    versions: dict[str, str]
    seconds: float = 0.0
