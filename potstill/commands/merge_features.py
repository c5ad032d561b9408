"""`potstill merge-features PART_DIR... --out DIR`: join the parts of one featurize job."""

from __future__ import annotations

import argparse

from potstill.features.featurize import merge_parts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("parts", nargs="+", help="store folders of parts 0..N-1")
    parser.add_argument("--out", required=True, help="merged store folder")


def run(args: argparse.Namespace) -> int:
    out = merge_parts(args.parts, args.out)
    print(f"merged {len(args.parts)} parts into {out}")
    return 0
