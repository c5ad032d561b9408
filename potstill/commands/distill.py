"""`potstill distill --teacher T --dims 256 [--features DIR | --corpus FILE] [--vocab-size N] --out DIR`."""

from __future__ import annotations

import argparse

from potstill.commands.common import add_common, resolve_config
from potstill.config import DistillConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", help="hub id or local folder of the teacher")
    parser.add_argument("--dims", type=int, help="PCA dimensions (<= teacher width)")
    parser.add_argument("--features", help="featurized store: corpus words and frequencies from its texts")
    parser.add_argument("--corpus", help="or a corpus file (.txt/.gz/.jsonl/.parquet)")
    parser.add_argument("--max-corpus-sentences", type=int, dest="max_corpus_sentences")
    parser.add_argument("--vocab-size", type=int, dest="vocab_size", help="corpus words to add (0: none)")
    parser.add_argument("--min-frequency", type=int, dest="min_frequency")
    parser.add_argument("--vocab", help="a vocabulary file (one word per line) instead of corpus words")
    parser.add_argument("--pooling", choices=["mean", "cls", "teacher"])
    parser.add_argument(
        "--tokens",
        choices=["auto", "isolated", "context"],
        help="token vectors: alone as [CLS] tok [SEP], or averaged over corpus sentences (auto: context with a corpus)",
    )
    parser.add_argument("--context-sentences", type=int, dest="context_sentences")
    parser.add_argument("--sif", choices=["auto", "zipf", "corpus", "none"])
    parser.add_argument("--sif-coefficient", type=float, dest="sif_coefficient")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    add_common(parser, out_help="model2vec model folder")


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, DistillConfig, "distill")
    if cfg is None:
        return 0
    from potstill.distill.build import distill

    out = distill(cfg)
    print(f"static model in {out}")
    return 0
