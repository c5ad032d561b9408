"""Command-line flags generated from a stage's config dataclass, plus the flags every stage
command shares: a recipe, `--set` overrides, `--dry-run`.

Each config field becomes one flag, `--field-name` (or the positional argument its metadata
names): its help from the field's metadata, its type from the annotation, an Enum's values as
choices, a bool as `--x/--no-x`. A flag left unset is None and does not override the recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
from typing import Any, TypeVar

from potstill.config import fields, hints, plain_type, stage_config, to_dict

C = TypeVar("C")


def _kind(hint: Any) -> dict[str, Any]:
    """argparse keywords for a field's type."""
    t = plain_type(hint)
    if t is bool:
        return {"action": argparse.BooleanOptionalAction}
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return {"choices": [m.value for m in t]}
    if t in (int, float):
        return {"type": t}
    return {}  # str, and tuples given as A,B,... (the config splits them)


def _with_default(help_text: str, default: Any) -> str:
    """The help, with the default appended unless it already names one (or there is none)."""
    if "default" in help_text or default in (None, "", ()) or default is dataclasses.MISSING:
        return help_text
    shown = (
        default.value
        if isinstance(default, enum.Enum)
        else str(default).lower()
        if isinstance(default, bool)
        else default
    )
    return f"{help_text} (default {shown})"


def add_config_flags(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """One flag (or positional argument) per field of `cls`, then the shared flags."""
    types_of = hints(cls)
    for f in fields(cls):
        meta = f.metadata
        if meta.get("flag") == "":
            continue  # filled another way (the field's metadata says how)
        help_text = _with_default(meta.get("help") or "", f.default)
        kind = _kind(types_of[f.name])
        if meta.get("positional"):
            parser.add_argument(
                f.name, nargs=meta["positional"], metavar=meta.get("metavar"), help=help_text, default=None
            )
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        extra: dict[str, Any] = {"action": "append"} if meta.get("repeat") else kind
        parser.add_argument(
            flag, dest=f.name, metavar=meta.get("metavar"), help=help_text, default=None, **extra
        )
    parser.add_argument("--recipe", help="TOML recipe whose table for this stage fills the config")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one config value (repeatable)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")


def flag_values(args: argparse.Namespace, cls: type[Any]) -> dict[str, Any]:
    """The config values given on the command line (None: not given)."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        value = getattr(args, f.name, None)
        if isinstance(value, list):  # nargs="*" / append: an empty list is "not given"
            value = tuple(value) or None
        out[f.name] = value
    return out


def resolve_config(args: argparse.Namespace, cls: type[C], section: str) -> C | None:
    """The stage config from defaults < recipe < --set < flags; with --dry-run, print it and
    return None."""
    flags = flag_values(args, cls)
    if "recipe" in flags and flags["recipe"] is None:
        flags["recipe"] = args.recipe  # a config that quotes its recipe (export's card)
    cfg = stage_config(cls, section, args.recipe, flags, args.set)
    if args.dry_run:
        print(json.dumps(to_dict(cfg), indent=2))
        return None
    return cfg


__all__ = ["add_config_flags", "flag_values", "resolve_config"]
