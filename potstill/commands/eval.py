"""`potstill eval MODEL [MODEL ...] [--teacher ID_OR_PATH] --tasks DIR [--task NAME ...] --out DIR`.

Runs mteb's own evaluators on task folders (and, online, on mteb hub tasks with `--mteb`) for
static models and the MLX teacher, times them on the same sentences, and writes results.json,
report.md, PNG plots and manifest.json into `--out`. Needs the `eval` extra (mteb, torch).
"""

from __future__ import annotations

import argparse

from potstill.commands.common import add_config_flags, resolve_config
from potstill.eval.config import EvalConfig
from potstill.eval.stage import evaluate_to_folder, summary_lines

CONFIG = EvalConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, CONFIG, "eval")
    if cfg is None:
        return 0
    out = evaluate_to_folder(cfg)
    print("\n".join([*summary_lines(out), f"wrote {out}"]))
    return 0
