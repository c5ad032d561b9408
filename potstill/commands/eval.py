"""`potstill eval MODEL [MODEL ...] [--teacher ID_OR_PATH] --tasks DIR [--task NAME ...] --out DIR`.

Runs mteb's own evaluators on task folders (and, online, on mteb hub tasks with `--mteb`) for
static models and the MLX teacher, times them on the same sentences, and writes results.json,
report.md, PNG plots and manifest.json into `--out`. Needs the `eval` extra (mteb, torch).
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

from potstill import manifest
from potstill.commands.common import add_common, print_config
from potstill.config import ConfigError, EvalConfig, config_hash, stage_config, to_dict

logger = logging.getLogger(__name__)

INSTALL = 'pip install "potstill[eval]" torch==2.13.0'
EXTRA_MODULES = ("mteb", "torch", "matplotlib")


class EvalSetupError(ValueError):
    """The eval extra is not installed; the message gives the install command."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="model2vec folders to evaluate")
    parser.add_argument(
        "--teacher", metavar="ID_OR_PATH", help="hub id or folder of the MLX teacher to evaluate beside them"
    )
    parser.add_argument(
        "--tasks", metavar="DIR", help="a folder of task folders (task.json + jsonl; BEIR for retrieval)"
    )
    parser.add_argument(
        "--task", action="append", metavar="NAME", help="run only this task folder (repeatable; default: all)"
    )
    parser.add_argument("--mteb", metavar="NAME,...", help="mteb hub tasks by name (needs network access)")
    parser.add_argument("--split", help="evaluation split (default test; classification trains on train)")
    parser.add_argument("--batch-size", type=int, dest="batch_size", help="teacher batch size")
    parser.add_argument("--max-seq-length", type=int, dest="max_seq_length", help="teacher truncation")
    parser.add_argument(
        "--speed-sentences", type=int, dest="speed_sentences", help="sentences timed per model (0: no timing)"
    )
    add_common(parser, out_help="output folder: results.json, report.md, PNG plots, manifest.json")


def require_eval_extra() -> None:
    """Import what `eval` needs, or say how to install it."""
    for module in EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise EvalSetupError(
                f"potstill eval needs {module} ({e}); install the eval extra: {INSTALL}"
            ) from e


def run(args: argparse.Namespace) -> int:
    flags = {k: getattr(args, k) for k in ("teacher", "tasks", "task", "mteb", "out", "split", "batch_size")}
    flags |= {
        "models": args.models or None,
        "max_seq_length": args.max_seq_length,
        "speed_sentences": args.speed_sentences,
    }
    cfg = stage_config(EvalConfig, "eval", args.recipe, flags, args.set)
    if args.dry_run:
        print_config(cfg)
        return 0
    evaluate_to_folder(cfg)
    return 0


def evaluate_to_folder(cfg: EvalConfig) -> Path:
    """Evaluate, then write results.json, report.md, plots and the manifest into `cfg.out`."""
    if not cfg.out:
        raise ConfigError("eval needs --out DIR")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder")
    from potstill.eval.run import check_inputs, evaluate

    checked = check_inputs(cfg)  # every task folder read and checked before the heavy imports
    require_eval_extra()
    from potstill.eval import plots, report

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
    for m in result.models:
        dev = m.dev
        dev_text = f"dev score {100 * dev.dev_score:.2f}" if dev.dev_score is not None else "dev score n/a"
        beside = f", SciFact {100 * dev.beside:.2f}" if dev.beside is not None else ""
        speed = f", {m.speed.per_second:,.0f} sentences/s" if m.speed else ""
        print(f"{m.label}: {dev_text}{beside}{speed}")
    print(f"wrote {out}: {', '.join(f.name for f in files)} ({result.seconds:.0f} s)")
    return out
