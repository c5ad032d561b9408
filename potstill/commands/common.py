"""Flags every stage command shares: a recipe, `--set` overrides, `--dry-run`, `--out`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, TypeVar

from potstill.config import stage_config, to_dict

C = TypeVar("C")


def add_common(parser: argparse.ArgumentParser, *, out_help: str) -> None:
    parser.add_argument("--out", help=out_help)
    parser.add_argument("--recipe", help="TOML recipe whose table for this stage fills the config")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one config value (repeatable)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")


def print_config(config: Any) -> None:
    print(json.dumps(to_dict(config), indent=2))


def resolve_config(args: argparse.Namespace, cls: type[C], section: str) -> C | None:
    """The stage config from defaults < recipe < --set < flags named like its fields; with
    --dry-run, print it and return None."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    flags = {n: getattr(args, n, None) for n in names}
    cfg = stage_config(cls, section, args.recipe, flags, args.set)
    if args.dry_run:
        print_config(cfg)
        return None
    return cfg
