"""The stage contract: what every stage package's `stage.py` declares, and what the pipeline
hands it.

A stage is a `Stage`: its name, its config class, the config fields the pipeline supplies
(paths that join the stages, the run's teacher and corpus; a recipe may not set them), `wire`
(the values of those fields, from the run so far), and `run(config) -> manifest`. The pipeline
walks an ordered registry of stages and knows nothing else of them: where each writes, what it
reads and what it reports all come from here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from potstill.config import to_dict


@dataclass(frozen=True)
class Step:
    """One stage of a planned run: its resolved config and the folder it writes."""

    stage: str
    config: Any
    out: Path


@dataclass(frozen=True)
class Context:
    """What a stage's `wire` sees: the run's settings and the steps planned before it."""

    recipe: Path
    name: str  # the run's name (its folder under workdir)
    teacher: str  # the teacher every later stage uses (a quantize stage replaces it)
    corpus: str
    workdir: Path
    steps: dict[str, Step]

    @property
    def folder(self) -> Path:
        """The run's own folder: WORKDIR/NAME."""
        return self.workdir / self.name

    def out(self, stage: str) -> Path:
        """The folder an earlier stage writes; an error when the recipe has no such stage."""
        if stage not in self.steps:
            raise KeyError(f"stage {stage!r} is not planned before this one")
        return self.steps[stage].out

    def config(self, stage: str) -> Any:
        """An earlier stage's resolved config."""
        return self.steps[stage].config


@dataclass(frozen=True)
class Stage:
    """A stage as the pipeline runs it."""

    name: str
    config: type[Any]
    supplied: tuple[str, ...]  # config fields the pipeline fills through `wire`; a recipe may not set them
    # (the recipe's config, context) -> the supplied values (and any field it refines, such as
    # eval's models, which get the exported model put first)
    wire: Callable[[Any, Context], dict[str, Any]]
    run: Callable[[Any], dict[str, Any]]  # config -> the manifest it wrote
    optional: bool = False  # runs only when the recipe has the stage's table
    provides: str | None = None  # "teacher": the stage's output is the teacher of every later stage
    check: Callable[[Any], None] | None = None  # fails fast on a missing input, before any stage runs
    summarize: Callable[[Path], dict[str, Any]] | None = None  # its part of the run summary (run.json)
    every_rank: bool = False  # under mlx.launch: runs on every rank (else on rank 0, the others wait)


def slug(text: str) -> str:
    """A file-name-safe form of `text`."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.") or "x"


def short_hash(config: Any, leave_out: tuple[str, ...] = ("out",), **replace: Any) -> str:
    """8 hex digits of a config's settings (less `leave_out`, with `replace` applied): names a
    shared folder after what decides its content."""
    settings = {k: v for k, v in to_dict(config).items() if k not in leave_out}
    settings.update(replace)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
