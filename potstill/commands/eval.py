"""`potstill eval`: placeholder until the evaluation stage lands (issue: Evaluation)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("potstill eval is being built")
