"""The export stage: RUN/trained/'s model -> RUN/RUN-DTYPE/, the folder users load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from potstill import manifest
from potstill.contract import Context, Stage
from potstill.export.config import ExportConfig
from potstill.export.writer import export
from potstill.train.stage import model_folder


def wire(cfg: ExportConfig, ctx: Context) -> dict[str, Any]:
    return {
        "model": str(model_folder(ctx.config("train"))),
        "out": str(ctx.folder / f"{ctx.name}-{cfg.dtype}"),
        "check_texts": str(ctx.out("featurize")),
        "recipe": str(ctx.recipe),
        "name": cfg.name or ctx.name,
    }


def summarize(out: Path) -> dict[str, Any]:
    """The exported model for run.json: path, rows x dims, dtype, bytes, the reload check."""
    if not (out / manifest.MANIFEST).is_file():
        return {"model": {}}
    info = manifest.read(out)
    return {
        "model": {"path": str(out), **{k: info.get(k) for k in ("rows", "dims", "dtype", "bytes", "check")}}
    }


def run(cfg: ExportConfig) -> dict[str, Any]:
    return manifest.read(export(cfg))


STAGE = Stage(
    name="export",
    config=ExportConfig,
    supplied=("model", "out", "check_texts", "recipe"),
    wire=wire,
    run=run,
    summarize=summarize,
)
