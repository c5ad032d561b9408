"""The eval output folder: `results.json` (mteb's scores per model and task) and `report.md`.

results.json keeps scores as mteb returns them (fractions) with mteb's full result per task;
report.md shows them x100, models side by side: the dev score and its category means, speed and
size, then every task's main score (and the extras, e.g. TwitterURLCorpus cosine AP).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from potstill.eval.scores import BESIDE_DEV, DEV_CATEGORIES, DEV_TASKS, EvalRun, ModelScores, TaskScore
from potstill.eval.speed import Speed
from potstill.eval.tasks import TaskSpec, TaskType

RESULTS = "results.json"
REPORT = "report.md"
FORMAT = "potstill-eval/1"


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _spec_dict(spec: TaskSpec) -> dict[str, Any]:
    return {
        "type": spec.type.value,
        "main_score": spec.main_score,
        "mteb_task": spec.mteb_task,
        "mteb_subset": spec.mteb_subset,
        "folder": str(spec.folder) if spec.folder else None,
    }


def _model_dict(m: ModelScores) -> dict[str, Any]:
    return {
        "kind": m.kind,
        "source": m.source,
        "dim": m.dim,
        "size_bytes": m.size_bytes,
        "speed": m.speed.to_dict() if m.speed else None,
        "dev": m.dev.to_dict(),
        "tasks": {
            name: {
                "metric": s.metric,
                "main_score": s.value,
                "extras": s.extras,
                "seconds": s.seconds,
                "mteb": s.mteb,
            }
            for name, s in m.tasks.items()
        },
    }


def _finite(value: Any) -> Any:
    """NaN (e.g. mteb's AP of a multi-class task) as null, so results.json is strict JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_results(run: EvalRun, out: Path) -> Path:
    """results.json: per model, per task, mteb's scores (fractions)."""
    data = {
        "format": FORMAT,
        "split": run.split,
        "speed_sentences_from": run.speed_task,
        "versions": run.versions,
        "seconds": run.seconds,
        "tasks": {spec.name: _spec_dict(spec) for spec in run.tasks},
        "models": {m.label: _model_dict(m) for m in run.models},
    }
    return _write_text(out / RESULTS, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _number(value: Any) -> float:
    """A score from results.json, where NaN was written as null."""
    return float("nan") if value is None else float(value)


def read_results(path: Path) -> EvalRun:
    """The run a results.json holds, as `write_results` wrote it (dev scores are recomputed from
    the main scores, exactly as for the run itself)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise ValueError(f"{path} is not a potstill eval {RESULTS} (format {found!r}, expected {FORMAT!r})")
    try:
        tasks = [
            TaskSpec(
                name,
                TaskType(t["type"]),
                t["main_score"],
                t["mteb_task"],
                Path(t["folder"]) if t.get("folder") else None,
                t.get("mteb_subset"),
            )
            for name, t in data["tasks"].items()
        ]
        types = {spec.name: spec.type.value for spec in tasks}
        models = []
        for label, m in data["models"].items():
            sp = m.get("speed")
            speed = Speed(int(sp["sentences"]), float(sp["best_seconds"]), int(sp["passes"])) if sp else None
            scores = ModelScores(label, m["kind"], m["source"], int(m["dim"]), int(m["size_bytes"]), speed)
            for name, t in m["tasks"].items():
                extras = {k: _number(v) for k, v in (t.get("extras") or {}).items()}
                value = _number(t["main_score"])
                mteb = t.get("mteb") or {}
                scores.tasks[name] = TaskScore(
                    name, types.get(name, ""), t["metric"], value, extras, float(t.get("seconds") or 0), mteb
                )
            models.append(scores)
    except (KeyError, TypeError, ValueError) as e:
        problem = f"{type(e).__name__}: {e}"
        raise ValueError(f"{path}: unexpected content ({problem}); write it again with potstill eval") from e
    return EvalRun(
        data.get("split", "test"),
        tasks,
        models,
        data.get("speed_sentences_from"),
        dict(data.get("versions") or {}),
        float(data.get("seconds") or 0.0),
    )


def pct(value: float | None) -> str:
    """A fraction as x100 with two decimals; '-' when absent."""
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def summary_table(run: EvalRun) -> list[str]:
    """Dev score, category means, SciFact, speed and size: one column per model."""
    devs = [m.dev for m in run.models]
    lines = [_row(["", *(m.label for m in run.models)]), _row(["---"] * (len(run.models) + 1))]
    lines.append(_row(["**dev score**", *(f"**{pct(d.dev_score)}**" for d in devs)]))
    for category in DEV_CATEGORIES:
        lines.append(_row([category, *(pct(d.categories[category]) for d in devs)]))
    lines.append(_row([f"{BESIDE_DEV} NDCG@10", *(pct(d.beside) for d in devs)]))
    lines.append(
        _row(["sentences/s", *(f"{m.speed.per_second:,.0f}" if m.speed else "-" for m in run.models)])
    )
    lines.append(_row(["size on disk (MB)", *(f"{m.size_bytes / 1e6:.1f}" for m in run.models)]))
    lines.append(_row(["dimensions", *(str(m.dim) for m in run.models)]))
    return lines


def task_table(run: EvalRun) -> list[str]:
    """Each task's main score (and extras) x100: one row per task and metric, one column per model."""
    lines = [
        _row(["task", "type", "metric", *(m.label for m in run.models)]),
        _row(["---"] * (len(run.models) + 3)),
    ]
    for spec in run.tasks:
        scores = [m.tasks.get(spec.name) for m in run.models]
        for metric in [spec.main_score, *next((s.extras for s in scores if s), {})]:
            values = [pct(s.get(metric) if s else None) for s in scores]
            lines.append(_row([spec.name, spec.type.value, metric, *values]))
    return lines


def render_report(run: EvalRun, plots: list[Path]) -> str:
    """report.md's text."""
    missing = [t for t in DEV_TASKS if any(t in m.dev.missing for m in run.models)]
    parts = [
        "# potstill eval",
        "",
        f"Split `{run.split}`, scores x100, measured with mteb {run.versions.get('mteb', '?')}'s own evaluators "
        f"(model2vec {run.versions.get('model2vec', '?')}). Speed: best of timed passes over the same "
        f"{_sample_size(run)} sentences ({run.speed_task or 'not measured'}) for every model, in this run; "
        "compare speeds within one report only.",
        "",
        "## Summary",
        "",
        *summary_table(run),
        "",
        "The **dev score** is the mean of three category means: STS (STSBenchmark, SICK-R; cosine Spearman), "
        "Classification (Banking77, Emotion, AmazonCounterfactual; accuracy) and PairClassification "
        f"(TwitterURLCorpus; max AP). {BESIDE_DEV} NDCG@10 is reported beside it.",
    ]
    if missing:
        parts += ["", f"Dev score not computed: this run lacks {', '.join(missing)}."]
    parts += ["", "## Tasks", "", *task_table(run), ""]
    for plot in plots:
        parts += [f"![{plot.stem}]({plot.name})", ""]
    return "\n".join(parts)


def _sample_size(run: EvalRun) -> str:
    sizes = {m.speed.sentences for m in run.models if m.speed}
    return ", ".join(str(s) for s in sorted(sizes)) or "0"


def write_report(run: EvalRun, out: Path, plots: list[Path]) -> Path:
    """report.md, linking the plots written beside it."""
    return _write_text(out / REPORT, render_report(run, plots))
