"""`potstill featurize --teacher T --corpus FILE|hf:NAME --out DIR [--num-parts N --part I]`."""

from __future__ import annotations

import argparse

from potstill.commands.common import add_config_flags, resolve_config
from potstill.features.config import FeaturizeConfig
from potstill.features.featurize import featurize

CONFIG = FeaturizeConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, CONFIG, "featurize")
    if cfg is None:
        return 0
    print(f"features in {featurize(cfg)}")
    return 0
