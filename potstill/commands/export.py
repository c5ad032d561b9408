"""`potstill export MODEL_DIR --dtype int8|float16|float32 [--vocab-quantize K] [--push-to-hub REPO] --out DIR`."""

from __future__ import annotations

import argparse

from potstill import manifest
from potstill.commands.common import add_config_flags, resolve_config
from potstill.export.config import ExportConfig
from potstill.export.writer import export

CONFIG = ExportConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, CONFIG, "export")
    if cfg is None:
        return 0
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
