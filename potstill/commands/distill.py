"""`potstill distill --teacher T --dims 256 [--features DIR | --corpus FILE] [--vocab-size N] --out DIR`."""

from __future__ import annotations

import argparse

from potstill.commands.common import add_config_flags, resolve_config
from potstill.distill.build import distill
from potstill.distill.config import DistillConfig

CONFIG = DistillConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, CONFIG, "distill")
    if cfg is None:
        return 0
    print(f"static model in {distill(cfg)}")
    return 0
