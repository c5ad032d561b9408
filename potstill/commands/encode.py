"""`potstill encode --teacher ID_OR_PATH --input texts.txt --out emb.npy`."""

from __future__ import annotations

import argparse

from potstill.commands.common import add_config_flags, resolve_config
from potstill.teacher.encode import EncodeConfig, encode_file

CONFIG = EncodeConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, CONFIG, "encode")
    if cfg is None:
        return 0
    print(encode_file(cfg))
    return 0
