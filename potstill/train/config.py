"""`potstill train`'s settings: contrastive training against the teacher, then born-again rounds."""

from __future__ import annotations

from dataclasses import dataclass

from potstill.config import ConfigError, setting, settle
from potstill.train.losses import Loss


@dataclass(frozen=True)
class TrainConfig:
    """`potstill train`: refine a distilled table against featurized teacher embeddings, then
    (with `born_again`) train a fresh copy of the base on the round-1 model's own embeddings, and
    again on that one's for each further born-again round."""

    base: str = setting("", "distilled model folder (potstill distill's output)")
    features: str = setting("", "featurized store of the same teacher")
    out: str = setting(
        "", "run folder: round1/, [round2/ ...,] final/ and the manifest (resumed when it exists)"
    )
    loss: Loss = setting(Loss.CONTRASTIVE, "contrastive (in-batch InfoNCE) | cosine | mse")
    temperature: float = setting(0.1, "contrastive temperature")
    batch_size: int = setting(256, "sentences per batch (the in-batch negatives)")
    neighbour_block: int = setting(
        1,
        "batch runs of N neighbouring store sentences (mostly one document's: hard in-batch "
        "negatives); 1 shuffles sentence by sentence",
    )
    epochs: int = setting(6, "epochs per round (the step budget)")
    patience: int = setting(2, "early-stopping patience in epochs (0: off)")
    lr: float = setting(3e-3, "peak learning rate")
    weight_decay: float = setting(0.0, "AdamW weight decay toward zero")
    anchor_decay: float = setting(0.0, "weight decay toward the round's starting values (L2-SP)")
    base_blend: float = setting(
        0.0,
        "save each round as (1 - B) x the trained model + B x its start, the base through the "
        "fitted head (WiSE-FT); 0 keeps the trained model",
    )
    warmup: float = setting(0.05, "share of the round's steps spent warming the learning rate up")
    val_fraction: float = setting(0.02, "held-out share of the store (by a hash of the text)")
    val_max: int = setting(5_000, "at most this many held-out sentences (kept in memory)")
    max_sentences: int | None = setting(None, "use only the first N sentences of the store")
    max_tokens: int = setting(512, "tokens per sentence, as model2vec truncates")
    born_again: bool = setting(False, "then train a fresh copy of the base on round 1's own embeddings")
    alpha: float = setting(
        0.5, "born-again: weight of the teacher's targets (the rest: the previous round's)"
    )
    born_again_rounds: int = setting(
        1, "born-again rounds after round 1, each on the previous round's embeddings: round2/ ... final/"
    )
    seed: int = setting(0, "seed of the order, the split and the initialisation")

    def __post_init__(self) -> None:
        settle(self)
        if self.neighbour_block < 1:
            raise ConfigError(f"neighbour_block={self.neighbour_block} must be >= 1")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 2 (in-batch negatives)")
        if self.epochs < 1 or self.patience < 0:
            raise ConfigError("epochs must be >= 1 and patience >= 0")
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError("temperature and lr must be > 0")
        if self.weight_decay < 0 or self.anchor_decay < 0:
            raise ConfigError("weight_decay and anchor_decay must be >= 0")
        if not 0.0 <= self.base_blend < 1.0:
            raise ConfigError(f"base_blend={self.base_blend} must be in [0, 1)")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"warmup={self.warmup} must be in [0, 1)")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction={self.val_fraction} must be in (0, 0.5)")
        if self.born_again_rounds < 1:
            raise ConfigError(f"born_again_rounds={self.born_again_rounds} must be >= 1")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha={self.alpha} must be in [0, 1]")
        if self.max_tokens < 1 or self.val_max < 1:
            raise ConfigError("max_tokens and val_max must be >= 1")
