"""`potstill featurize --teacher T --corpus FILE|hf:NAME --out DIR [--num-parts N --part I]`."""

from __future__ import annotations

import argparse
import dataclasses

from potstill.commands.common import add_common, print_config
from potstill.config import FeaturizeConfig, stage_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", help="hub id or local folder of the teacher")
    parser.add_argument("--corpus", help="a .txt(.gz)/.jsonl(.gz)/.parquet file, or hf:NAME[:CONFIG]")
    parser.add_argument("--text-field", dest="text_field", help="jsonl/parquet/dataset field (default text)")
    parser.add_argument("--split-sentences", action="store_true", default=None, dest="split_sentences")
    parser.add_argument("--min-words", type=int, dest="min_words")
    parser.add_argument("--max-words", type=int, dest="max_words")
    parser.add_argument("--no-dedupe", action="store_false", default=None, dest="dedupe")
    parser.add_argument("--sample-rate", type=float, dest="sample_rate", help="keep this share (seeded)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-sentences", type=int, dest="max_sentences")
    parser.add_argument("--skip-invalid", action="store_true", default=None, dest="skip_invalid")
    parser.add_argument("--target", choices=["teacher", "token-mean"])
    parser.add_argument("--prompt", help="teacher prompt name (e.g. query) or literal text")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--max-seq-length", type=int, dest="max_seq_length")
    parser.add_argument("--shard-size", type=int, dest="shard_size")
    parser.add_argument("--num-parts", type=int, dest="num_parts", help="split the job into N parts")
    parser.add_argument("--part", type=int, help="which part (0..N-1) this run computes")
    add_common(parser, out_help="store folder (resumed when it exists)")


def run(args: argparse.Namespace) -> int:
    names = [f.name for f in dataclasses.fields(FeaturizeConfig)]
    flags = {n: getattr(args, n, None) for n in names}
    cfg = stage_config(FeaturizeConfig, "featurize", args.recipe, flags, args.set)
    if args.dry_run:
        print_config(cfg)
        return 0
    from potstill.distill.featurize import featurize

    out = featurize(cfg)
    print(f"features in {out}")
    return 0
