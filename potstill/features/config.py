"""`potstill featurize`'s settings: a corpus into resumable shards of teacher embeddings."""

from __future__ import annotations

from dataclasses import dataclass

from potstill.config import DEFAULT_TEACHER, Choice, ConfigError, setting, settle


class Target(Choice):
    """What a store row holds."""

    TEACHER = "teacher"  # the teacher's own sentence embedding (its pooling and normalisation)
    TOKEN_MEAN = "token-mean"  # the mean of its token outputs without CLS/SEP (tokenlearn's)


@dataclass(frozen=True)
class FeaturizeConfig:
    """`potstill featurize`: a corpus into resumable shards of teacher embeddings."""

    teacher: str = setting(DEFAULT_TEACHER, "hub id or local folder of the teacher")
    corpus: str = setting("hf:allenai/c4:en", "a .txt(.gz)/.jsonl(.gz)/.parquet file, or hf:NAME[:CONFIG]")
    out: str = setting("", "store folder (resumed when it exists)")
    text_field: str = setting("text", "jsonl/parquet/dataset field (default text)")
    split_sentences: bool = setting(False, "split each text into sentences")
    min_words: int = setting(1, "drop sentences with fewer words")
    max_words: int = setting(10_000, "drop sentences with more words")
    dedupe: bool = setting(True, "exact de-duplication of sentences")
    sample_rate: float = setting(1.0, "keep this share (seeded)")
    seed: int = setting(0, "seed of the sampling")
    max_sentences: int | None = setting(None, "stop after this many sentences")
    skip_invalid: bool = setting(False, "skip lines that are not UTF-8 (counted) instead of stopping")
    target: Target = setting(
        Target.TEACHER, "teacher: its own pooling + normalisation; token-mean: tokenlearn's target"
    )
    prompt: str | None = setting(None, "teacher prompt name (e.g. query) or literal text")
    batch_size: int = setting(64, "teacher batch size")
    max_seq_length: int | None = setting(None, "teacher truncation (default: the checkpoint's)")
    shard_size: int = setting(10_000, "sentences per shard")
    num_parts: int = setting(1, "split the job into N parts")
    part: int = setting(0, "which part (0..N-1) this run computes")

    def __post_init__(self) -> None:
        settle(self)
        if self.shard_size < 1 or self.batch_size < 1:
            raise ConfigError("shard_size and batch_size must be >= 1")
        if self.num_parts < 1 or not 0 <= self.part < self.num_parts:
            raise ConfigError(f"part={self.part} must be in [0, num_parts={self.num_parts})")
        if self.max_sentences is not None and self.max_sentences < 1:
            raise ConfigError(f"max_sentences={self.max_sentences} must be >= 1")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ConfigError(f"sample_rate={self.sample_rate} must be in (0, 1]")
