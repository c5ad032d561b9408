"""`potstill inspect PATH`: print the manifest of a stage output and check its files."""

from __future__ import annotations

import argparse
import json

from potstill import manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="an output folder (or output file) written by potstill")


def run(args: argparse.Namespace) -> int:
    data = manifest.read(args.path)
    print(json.dumps(data, indent=2))
    problems = manifest.verify(args.path)
    for p in problems:
        print(f"problem: {p}")
    return 1 if problems else 0
