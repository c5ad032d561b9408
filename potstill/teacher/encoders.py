"""The encoder families potstill runs, by a checkpoint's `config.json` `model_type`: each one's
config, MLX module and checkpoint-name mapping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from potstill.teacher import bert, mpnet
from potstill.teacher.bert import BertConfig, BertEncoder, UnsupportedModelError


@dataclass(frozen=True)
class Family:
    """One encoder family: its config class, its module, and its checkpoint-name mapping."""

    config: type[BertConfig]
    encoder: type[BertEncoder]
    sanitize: Callable[[dict[str, mx.array]], dict[str, mx.array]]
    examples: str  # for messages


FAMILIES = {
    "bert": Family(BertConfig, BertEncoder, bert.sanitize, "BERT, MiniLM, bge, e5, mxbai"),
    "mpnet": Family(mpnet.MPNetConfig, mpnet.MPNetEncoder, mpnet.sanitize, "all-mpnet-base-v2"),
}


def family(model_type: str) -> Family:
    """The family of a `model_type`, or an error that lists the supported ones."""
    if model_type not in FAMILIES:
        known = "; ".join(f"'{k}' ({f.examples})" for k, f in FAMILIES.items())
        raise UnsupportedModelError(
            f"model_type={model_type!r} is not supported; potstill runs these encoder families: "
            f"{known}. Pick such a teacher."
        )
    return FAMILIES[model_type]


def config_from_dict(raw: dict[str, Any]) -> BertConfig:
    """The encoder config of a `config.json` dict, of its family's class."""
    return family(str(raw.get("model_type", "bert"))).config.from_dict(raw)


def build(cfg: BertConfig) -> BertEncoder:
    """An (uninitialised until evaluated) encoder module for `cfg`."""
    return family(cfg.model_type).encoder(cfg)


def sanitize(cfg: BertConfig, weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Checkpoint tensors renamed onto the module tree of `cfg`'s family."""
    return family(cfg.model_type).sanitize(weights)
