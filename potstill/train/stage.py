"""The train stage: RUN/base/ + the featurized store -> RUN/trained/ (round1/ ... final/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from potstill import manifest
from potstill.contract import Context, Stage
from potstill.train.config import TrainConfig
from potstill.train.trainer import train


def model_folder(cfg: TrainConfig) -> Path:
    """The trained model a later stage takes: final/ with born-again rounds, else round1/."""
    return Path(cfg.out) / ("final" if cfg.born_again else "round1")


def wire(cfg: TrainConfig, ctx: Context) -> dict[str, Any]:
    return {
        "base": str(ctx.out("distill")),
        "features": str(ctx.out("featurize")),
        "out": str(ctx.folder / "trained"),
    }


def run(cfg: TrainConfig) -> dict[str, Any]:
    train(cfg)
    return manifest.read(cfg.out)


STAGE = Stage(
    name="train",
    config=TrainConfig,
    supplied=("base", "features", "out"),
    wire=wire,
    run=run,
    every_rank=True,
)
