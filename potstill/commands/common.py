"""Flags every stage command shares: a recipe, `--set` overrides, `--dry-run`, `--out`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from potstill.config import to_dict


def add_common(parser: argparse.ArgumentParser, *, out_help: str) -> None:
    parser.add_argument("--out", help=out_help)
    parser.add_argument("--recipe", help="TOML recipe whose table for this stage fills the config")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one config value (repeatable)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")


def print_config(config: Any) -> None:
    print(json.dumps(to_dict(config), indent=2))
