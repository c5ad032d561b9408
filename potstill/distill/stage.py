"""The distill stage: the teacher and the featurized store -> RUN/base/, a first static model."""

from __future__ import annotations

from typing import Any

from potstill import manifest
from potstill.contract import Context, Stage
from potstill.distill.build import distill
from potstill.distill.config import DistillConfig


def wire(cfg: DistillConfig, ctx: Context) -> dict[str, Any]:
    features = str(ctx.out("featurize"))
    return {"teacher": ctx.teacher, "features": features, "corpus": None, "out": str(ctx.folder / "base")}


def run(cfg: DistillConfig) -> dict[str, Any]:
    return manifest.read(distill(cfg))


STAGE = Stage(
    name="distill",
    config=DistillConfig,
    supplied=("teacher", "features", "corpus", "out"),
    wire=wire,
    run=run,
)
