"""`potstill quantize --teacher T --scheme S --out DIR` (a quantized MLX checkpoint),
`... --screen --corpus FILE [--retrieval TASK_DIR]` (its fidelity to the float teacher), or
`--layer-map --corpus FILE --out DIR` (each layer's sensitivity, and a proposed scheme)."""

from __future__ import annotations

import argparse

from potstill.commands.common import add_config_flags, resolve_config
from potstill.config import ConfigError
from potstill.quantize.config import QuantizeConfig
from potstill.quantize.stage import quantize_teacher, run_layer_map

CONFIG = QuantizeConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, CONFIG, "quantize")
    if cfg is None:
        return 0
    if cfg.layer_map:
        print("\n".join(run_layer_map(cfg)))
        return 0
    if not cfg.out and not cfg.screen:
        raise ConfigError("quantize needs --out DIR (or --screen to only compare)")
    print("\n".join(quantize_teacher(cfg)))
    return 0
