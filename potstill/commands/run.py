"""`potstill run RECIPE [--corpus PATH] [--teacher ID] [--set stage.key=value ...] [--from STAGE]
[--until STAGE] [--dry-run]`: the whole chain from a recipe, resuming where it stopped."""

from __future__ import annotations

import argparse

from potstill import pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="a TOML recipe, e.g. recipes/minilm-256d.toml")
    parser.add_argument(
        "--corpus", help="featurize this corpus (a file, or hf:NAME[:CONFIG]) instead of the recipe's"
    )
    parser.add_argument("--teacher", help="hub id or folder of the teacher instead of the recipe's")
    parser.add_argument(
        "--set",
        action="append",
        metavar="STAGE.KEY=VALUE",
        help="override one setting, e.g. train.epochs=3 or run.workdir=out (repeatable)",
    )
    parser.add_argument(
        "--from", dest="start", choices=pipeline.STAGES, help="rerun this stage and all after it"
    )
    parser.add_argument("--until", choices=pipeline.STAGES, help="stop after this stage")
    parser.add_argument(
        "--dry-run", action="store_true", help="print each stage's folder, config and whether it would run"
    )


def run(args: argparse.Namespace) -> int:
    plan = pipeline.plan(args.recipe, corpus=args.corpus, teacher=args.teacher, sets=args.set)
    if args.dry_run:
        print(pipeline.dry_run_text(plan))
        return 0
    pipeline.execute(plan, start=args.start, until=args.until)
    return 0
