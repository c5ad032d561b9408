"""Per-epoch training state on disk, so a killed round resumes where its last epoch ended.

    checkpoint/model.safetensors      the live parameters
    checkpoint/best.safetensors       the parameters of the best validation epoch so far
    checkpoint/moments.safetensors    AdamW's first and second moments
    checkpoint/state.json             epochs and steps done, best epoch and loss, history, config hash

A new checkpoint is written beside the old one and swapped in by renames, so a kill at any moment
leaves one complete checkpoint (`checkpoint/` or, mid-swap, `checkpoint.old/`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

NAME = "checkpoint"
Arrays = dict[str, np.ndarray]


@dataclass
class RoundState:
    """Where a round stands after its last completed epoch."""

    config_sha256: str
    epochs_done: int = 0
    steps: int = 0
    best_epoch: int = 0  # 0: the initial model
    best_loss: float = float("inf")
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Saved:
    state: RoundState
    params: Arrays
    best: Arrays
    m: Arrays
    v: Arrays


def _c(arrays: Arrays) -> Arrays:
    # safetensors writes an array's buffer as it lies: a Fortran-ordered array would come back
    # transposed, so everything is made C-contiguous first
    return {k: np.ascontiguousarray(a) for k, a in arrays.items()}


def save(folder: Path, saved: Saved) -> None:
    """Write the round's state into `folder/checkpoint` atomically (by directory renames)."""
    final = folder / NAME
    tmp = folder / f"{NAME}.tmp"
    old = folder / f"{NAME}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_c(saved.params), str(tmp / "model.safetensors"))
    save_file(_c(saved.best), str(tmp / "best.safetensors"))
    moments = {f"m.{k}": a for k, a in saved.m.items()} | {f"v.{k}": a for k, a in saved.v.items()}
    save_file(_c(moments), str(tmp / "moments.safetensors"))
    (tmp / "state.json").write_text(json.dumps(asdict(saved.state), indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load(folder: Path, config_sha256: str) -> Saved | None:
    """The last checkpoint made with this config, or None when there is none (or it was made
    with other settings, or it is unreadable)."""
    for name in (NAME, f"{NAME}.old"):
        path = folder / name
        if not (path / "state.json").is_file():
            continue
        try:
            state = RoundState(**json.loads((path / "state.json").read_text(encoding="utf-8")))
            params = load_file(str(path / "model.safetensors"))
            best = load_file(str(path / "best.safetensors"))
            moments = load_file(str(path / "moments.safetensors"))
        except (OSError, ValueError, TypeError, SafetensorError):
            continue
        if state.config_sha256 != config_sha256:
            return None
        m = {k[2:]: a for k, a in moments.items() if k.startswith("m.")}
        v = {k[2:]: a for k, a in moments.items() if k.startswith("v.")}
        return Saved(state, params, best, m, v)
    return None


def remove(folder: Path) -> None:
    for name in (NAME, f"{NAME}.tmp", f"{NAME}.old"):
        shutil.rmtree(folder / name, ignore_errors=True)
