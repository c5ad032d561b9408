"""`potstill convert-features SRC --to tokenlearn|potstill --out DST`: tokenlearn interop."""

from __future__ import annotations

import argparse

from potstill.features.interop import export_tokenlearn, import_tokenlearn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", help="a potstill store (--to tokenlearn) or a tokenlearn folder (--to potstill)"
    )
    parser.add_argument("--to", required=True, choices=["tokenlearn", "potstill"])
    parser.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> int:
    n = (
        export_tokenlearn(args.src, args.out)
        if args.to == "tokenlearn"
        else import_tokenlearn(args.src, args.out)
    )
    print(f"wrote {n} texts to {args.out} ({args.to} format)")
    return 0
