"""`potstill export MODEL_DIR --dtype int8|float16|float32 [--vocab-quantize K] [--push-to-hub REPO] --out DIR`."""

from __future__ import annotations

import argparse

from potstill.commands.common import add_common, resolve_config
from potstill.config import EXPORT_DTYPES, ExportConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", nargs="?", metavar="MODEL_DIR", help="model2vec folder (potstill train's OUT/final, or any)"
    )
    parser.add_argument("--dtype", choices=list(EXPORT_DTYPES), help="table dtype (default int8)")
    parser.add_argument(
        "--vocab-quantize", type=int, dest="vocab_quantize", metavar="K", help="cluster the rows into K"
    )
    parser.add_argument(
        "--check-texts", dest="check_texts", help="reload-check sentences: a text file or a featurize store"
    )
    parser.add_argument(
        "--no-sentence-transformers",
        action="store_false",
        default=None,
        dest="sentence_transformers",
        help="int8: skip the 0_StaticEmbedding/ copy that sentence-transformers reads (half the folder)",
    )
    parser.add_argument("--check-sentences", type=int, dest="check_sentences")
    parser.add_argument("--min-mean-cosine", type=float, dest="min_mean_cosine")
    parser.add_argument("--min-cosine", type=float, dest="min_cosine")
    parser.add_argument("--push-to-hub", dest="push_to_hub", metavar="REPO", help="hub repo id to upload to")
    parser.add_argument("--private", action="store_true", default=None, help="create the hub repo private")
    parser.add_argument("--name", help="model name in the card (default: the --out folder name)")
    add_common(parser, out_help="the exported folder (replaced only when the reload check passes)")


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, ExportConfig, "export")
    if cfg is None:
        return 0
    from potstill import manifest
    from potstill.export import export

    out = export(cfg)
    info = manifest.read(out)
    check = info["check"]
    print(
        f"exported {info['rows']:,} x {info['dims']} {info['dtype']} ({info['bytes'] / 1e6:.2f} MB) to {out}; "
        f"reload check on {check['sentences']} sentences: mean cosine {check['mean_cosine']:.5f}, "
        f"min {check['min_cosine']:.5f}"
    )
    if cfg.push_to_hub:
        print(f"uploaded to https://huggingface.co/{cfg.push_to_hub}")
    return 0
