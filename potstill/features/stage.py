"""The featurize stage: a corpus and a teacher -> a store of teacher embeddings.

Under `potstill run` the store lives in WORKDIR/features/, named by teacher, corpus, size and a
hash of the settings that decide its content, so recipes with the same teacher and corpus share
it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from potstill import manifest
from potstill.config import ConfigError
from potstill.contract import Context, Stage, short_hash, slug
from potstill.features.config import FeaturizeConfig
from potstill.features.corpus import HF_PREFIX
from potstill.features.featurize import featurize

# settings that do not change a store's content: left out of its name
NOT_CONTENT = ("out", "batch_size", "num_parts", "part")


def store_name(cfg: FeaturizeConfig) -> str:
    """The store's folder name: teacher, corpus, size and a hash of the content settings."""
    is_hf = cfg.corpus.startswith(HF_PREFIX)
    digest = short_hash(cfg, NOT_CONTENT, corpus=cfg.corpus if is_hf else Path(cfg.corpus).name)
    corpus = cfg.corpus[len(HF_PREFIX) :] if is_hf else Path(cfg.corpus).name.split(".")[0]
    size = cfg.max_sentences if cfg.max_sentences is not None else "all"
    return f"{slug(cfg.teacher.rstrip('/').split('/')[-1])}-{slug(corpus)}-{size}-{digest}"


def wire(cfg: FeaturizeConfig, ctx: Context) -> dict[str, Any]:
    named = dataclasses.replace(cfg, teacher=ctx.teacher, corpus=ctx.corpus)
    return {
        "teacher": ctx.teacher,
        "corpus": ctx.corpus,
        "out": str(ctx.workdir / "features" / store_name(named)),
    }


def check(cfg: FeaturizeConfig) -> None:
    if not cfg.corpus.startswith(HF_PREFIX) and not Path(cfg.corpus).is_file():
        raise ConfigError(
            f"corpus {cfg.corpus} does not exist; pass --corpus FILE (or hf:NAME for a hub dataset)"
        )


def run(cfg: FeaturizeConfig) -> dict[str, Any]:
    return manifest.read(featurize(cfg))


STAGE = Stage(
    name="featurize",
    config=FeaturizeConfig,
    supplied=("teacher", "corpus", "out", "num_parts", "part"),
    wire=wire,
    run=run,
    check=check,
    every_rank=True,
)
