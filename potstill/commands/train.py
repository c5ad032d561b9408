"""`potstill train --base DIR --features DIR [--loss contrastive] [--born-again] --out DIR`."""

from __future__ import annotations

import argparse

from potstill.commands.common import add_config_flags, resolve_config
from potstill.train.config import TrainConfig
from potstill.train.trainer import train

CONFIG = TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, CONFIG, "train")
    if cfg is None:
        return 0
    print(f"trained model in {train(cfg)}")
    return 0
