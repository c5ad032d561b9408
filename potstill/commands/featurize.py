"""`potstill featurize --teacher T --corpus FILE|hf:NAME --out DIR [--num-parts N --part I]`."""

from __future__ import annotations

import argparse

from potstill.commands.common import add_common, resolve_config
from potstill.config import FeaturizeConfig


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
    cfg = resolve_config(args, FeaturizeConfig, "featurize")
    if cfg is None:
        return 0
    from potstill.distill.featurize import featurize

    out = featurize(cfg)
    print(f"features in {out}")
    return 0
