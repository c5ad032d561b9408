"""The eval stage: static models (and a teacher) -> results.json, report.md, plots, manifest.

Under `potstill run` it scores the exported model beside the recipe's reference models, fills
the exported model's card with the score table, and gives `run.json` its scores.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

from potstill import manifest
from potstill.config import ConfigError, config_hash, to_dict
from potstill.contract import Context, Stage
from potstill.eval import plots, report
from potstill.eval.card import fill_cards
from potstill.eval.config import INSTALL, EvalConfig
from potstill.eval.run import check_inputs, evaluate
from potstill.eval.scores import BESIDE_DEV

logger = logging.getLogger(__name__)

EXTRA_MODULES = ("mteb", "torch", "matplotlib")


class EvalSetupError(ValueError):
    """The eval extra is not installed; the message gives the install command."""


def require_eval_extra() -> None:
    """Import what `eval` needs, or say how to install it."""
    for module in EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise EvalSetupError(
                f"potstill eval needs {module} ({e}); install the eval extra: {INSTALL}"
            ) from e


def evaluate_to_folder(cfg: EvalConfig) -> Path:
    """Evaluate, then write results.json, report.md, plots and the manifest into `cfg.out`, and
    fill the evaluation section of each evaluated potstill model's card."""
    if not cfg.out:
        raise ConfigError("eval needs --out DIR")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder")
    checked = check_inputs(cfg)  # every task folder read and checked before the heavy imports
    require_eval_extra()
    result = evaluate(cfg, checked)
    out.mkdir(parents=True, exist_ok=True)
    pngs = [p for p in (plots.plot_tasks(result, out), plots.plot_speed(result, out)) if p is not None]
    for stale in {plots.TASKS_PNG, plots.SPEED_PNG} - {p.name for p in pngs}:
        (out / stale).unlink(missing_ok=True)  # a plot from an earlier run would not match this one
    files = [report.write_results(result, out), report.write_report(result, out, pngs), *pngs]
    inputs = [manifest.Input.of(m.source) for m in result.models]
    inputs += [manifest.Input.of(s.folder) for s in result.tasks if s.folder is not None]
    models = {
        m.label: {"kind": m.kind, "source": m.source, "size_bytes": m.size_bytes} for m in result.models
    }
    manifest.write(
        out,
        "eval",
        to_dict(cfg),
        config_hash(cfg),
        inputs,
        files,
        extra={"models": models, "eval_versions": result.versions},  # "versions" is the manifest's own
    )
    fill_cards(result)
    logger.info("wrote %s: %s (%.0f s)", out, ", ".join(f.name for f in files), result.seconds)
    return out


def summary_lines(out: Path) -> list[str]:
    """One line per model of an eval folder: dev score, SciFact and speed."""
    lines = []
    for m in report.read_results(out / report.RESULTS).models:
        dev = m.dev
        dev_text = f"dev score {100 * dev.dev_score:.2f}" if dev.dev_score is not None else "dev score n/a"
        beside = f", {BESIDE_DEV} {100 * dev.beside:.2f}" if dev.beside is not None else ""
        speed = f", {m.speed.per_second:,.0f} sentences/s" if m.speed else ""
        lines.append(f"{m.label}: {dev_text}{beside}{speed}")
    return lines


def wire(cfg: EvalConfig, ctx: Context) -> dict[str, Any]:
    model = str(ctx.out("export"))
    return {"models": (model, *(m for m in cfg.models if m != model)), "out": str(ctx.folder / "eval")}


def check(cfg: EvalConfig) -> None:
    if not cfg.tasks and not cfg.mteb:
        raise ConfigError("[eval] needs tasks = DIR (task folders) or mteb = [...] (hub tasks)")
    if cfg.tasks and not Path(cfg.tasks).is_dir():
        raise ConfigError(f"[eval] tasks {cfg.tasks} is not a folder; --set eval.tasks=DIR")
    for m in cfg.models[1:]:
        if not Path(m).is_dir():
            raise ConfigError(f"[eval] models: {m} is not a folder; --set eval.models=DIR,...")


def summarize(out: Path) -> dict[str, Any]:
    """Each model's dev score, SciFact, speed, size and width, for run.json."""
    path = out / report.RESULTS
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    scores = {}
    for label, m in data.get("models", {}).items():
        dev = m.get("dev", {})
        speed = m.get("speed") or {}
        scores[label] = {
            "dev_score": dev.get("dev_score"),
            "scifact": dev.get(BESIDE_DEV),
            "sentences_per_second": speed.get("sentences_per_second"),
            "size_bytes": m.get("size_bytes"),
            "dim": m.get("dim"),
        }
    return {"scores": scores}


def run(cfg: EvalConfig) -> dict[str, Any]:
    out = evaluate_to_folder(cfg)
    for line in summary_lines(out):
        logger.info("%s", line)
    return manifest.read(out)


STAGE = Stage(
    name="eval",
    config=EvalConfig,
    supplied=("out",),  # wire also puts the exported model first in `models`
    wire=wire,
    run=run,
    optional=True,
    check=check,
    summarize=summarize,
)
