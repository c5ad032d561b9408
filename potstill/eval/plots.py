"""PNG plots of an eval run (matplotlib, Agg backend): per-task scores, and dev score vs speed.

`tasks.png`: horizontal grouped bars, one group per task (the dev score first), one bar per
model, each labelled with its score x100. `speed.png`: dev score against sentences/s (log scale),
one labelled point per model; where the run lacks a dev task, the mean of its tasks' main
scores stands in, and the axis says so.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from potstill.eval.scores import EvalRun, ModelScores

logger = logging.getLogger(__name__)

TASKS_PNG = "tasks.png"
SPEED_PNG = "speed.png"


def _pyplot() -> Any:
    import matplotlib  # lazy: the optional eval extra

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    return plt


def _x100(value: float | None) -> float | None:
    """A fraction as a bar length x100; None (no bar) when absent or NaN."""
    return None if value is None or math.isnan(value) else 100 * value


def _bar_rows(run: EvalRun) -> list[tuple[str, list[float | None]]]:
    """(label, score x100 per model) for the dev score and every task metric, top to bottom."""
    rows: list[tuple[str, list[float | None]]] = []
    devs = [m.dev.dev_score for m in run.models]
    if any(d is not None for d in devs):
        rows.append(("dev score", [_x100(d) for d in devs]))
    for spec in run.tasks:
        scores = [m.tasks.get(spec.name) for m in run.models]
        for metric in [spec.main_score, *next((s.extras for s in scores if s), {})]:
            values = [s.get(metric) if s else None for s in scores]
            rows.append((f"{spec.name}\n{metric}", [_x100(v) for v in values]))
    return rows


def plot_tasks(run: EvalRun, out: Path) -> Path:
    """Grouped horizontal bars of every task's score x100, models side by side."""
    plt = _pyplot()
    rows = _bar_rows(run)
    n_models = len(run.models)
    height = 0.8 / n_models
    top = 0.35 + 0.25 * ((n_models + 2) // 3)  # inches for the title and the legend rows
    fig, ax = plt.subplots(figsize=(9, top + 0.6 + len(rows) * (0.3 + 0.28 * n_models)))
    colors = plt.get_cmap("tab10").colors
    for j, model in enumerate(run.models):
        ys = [i + (j - (n_models - 1) / 2) * height for i in range(len(rows))]
        values = [v[j] if v[j] is not None else 0.0 for _, v in rows]
        bars = ax.barh(ys, values, height=height * 0.92, color=colors[j % len(colors)], label=model.label)
        for bar, (_, v) in zip(bars, rows, strict=True):
            if v[j] is not None:
                ax.text(
                    bar.get_width() + 0.5,
                    bar.get_y() + bar.get_height() / 2,
                    f"{v[j]:.2f}",
                    va="center",
                    fontsize=8,
                )
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=9)
    ax.invert_yaxis()  # dev score on top, tasks in run order below
    if rows and rows[0][0] == "dev score":
        ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xlim(0, 109)
    ax.set_xlabel(f"score x100 ({run.split} split)")
    ax.grid(axis="x", alpha=0.3)
    height_in = fig.get_figheight()
    fig.suptitle("MTEB scores per task", y=1 - 0.15 / height_in, fontsize=12)
    fig.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.45 / height_in),
        ncol=min(n_models, 3),
        fontsize=9,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - top / height_in))
    path = out / TASKS_PNG
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _quality(model: ModelScores) -> float | None:
    dev = model.dev.dev_score
    if dev is not None:
        return dev
    values = list(model.main_scores.values())
    return sum(values) / len(values) if values else None


def plot_speed(run: EvalRun, out: Path) -> Path | None:
    """Dev score (x100) against sentences/s, log scale; None when no speed was measured."""
    points = []
    for m in run.models:
        quality = _quality(m)
        if m.speed is not None and quality is not None:
            points.append((m, m.speed.per_second, quality))
    if not points:
        logger.info("no speed measured: %s not written", SPEED_PNG)
        return None
    plt = _pyplot()
    complete = all(m.dev.dev_score is not None for m, _, _ in points)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = plt.get_cmap("tab10").colors
    for j, (model, speed, quality) in enumerate(points):
        ax.scatter([speed], [100 * quality], s=80, color=colors[j % len(colors)], zorder=3)
        note = f"{model.label}\n{100 * quality:.2f}, {speed:,.0f}/s, {model.size_bytes / 1e6:.0f} MB"
        ax.annotate(note, (speed, 100 * quality), textcoords="offset points", xytext=(8, 6), fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    speeds = [s for _, s, _ in points]
    ax.set_xlim(min(speeds) / 3, max(speeds) * 8)  # room for the labels on the right
    qualities = [100 * q for _, _, q in points]
    ax.set_ylim(min(qualities) - 3, max(qualities) + 3)
    ax.set_xlabel(f"encode speed, sentences/s (log scale; {run.speed_task})")
    ax.set_ylabel("dev score x100" if complete else "mean main score x100 (dev tasks incomplete)")
    ax.set_title("Quality vs encode speed (same run, same sentences)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / SPEED_PNG
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
