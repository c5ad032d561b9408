"""`potstill distill`'s settings: vocabulary, token vectors, PCA and SIF into a static model."""

from __future__ import annotations

from dataclasses import dataclass

from potstill.config import DEFAULT_TEACHER, Choice, ConfigError, setting, settle


class Pooling(Choice):
    """How an isolated token's teacher output ([CLS] tok [SEP]) becomes its vector."""

    MEAN = "mean"  # over all positions, model2vec's
    CLS = "cls"
    TEACHER = "teacher"  # the teacher's own pooling


class Tokens(Choice):
    """Where token vectors come from."""

    AUTO = "auto"  # context when a corpus is given, else isolated
    ISOLATED = "isolated"  # each token alone as [CLS] tok [SEP] (model2vec's)
    CONTEXT = "context"  # each entry's mean teacher output over its occurrences in corpus sentences


class Sif(Choice):
    """Which token probabilities give the SIF weights a / (a + p)."""

    AUTO = "auto"  # corpus frequencies when a corpus is given, else zipf
    ZIPF = "zipf"  # Zipf's law over the row order (model2vec's)
    CORPUS = "corpus"
    NONE = "none"


@dataclass(frozen=True)
class DistillConfig:
    """`potstill distill`: vocabulary, token embeddings, PCA and SIF weights -> a static model."""

    teacher: str = setting(DEFAULT_TEACHER, "hub id or local folder of the teacher")
    out: str = setting("", "model2vec model folder")
    dims: int = setting(256, "PCA dimensions (<= teacher width)")
    features: str | None = setting(None, "featurized store: corpus words and frequencies from its texts")
    corpus: str | None = setting(None, "or a corpus file (.txt/.gz/.jsonl/.parquet)")
    max_corpus_sentences: int | None = setting(None, "read at most this many corpus sentences")
    vocab_size: int = setting(0, "corpus words (split by the teacher) to add (0: none)")
    min_frequency: int = setting(2, "a corpus word must occur this often to be added")
    vocab: str | None = setting(None, "a vocabulary file (one word per line) instead of corpus words")
    remove_pattern: str = setting(r"\[unused\d+\]", "teacher wordpieces matching this regex are dropped")
    pooling: Pooling = setting(Pooling.MEAN, "isolated tokens: mean over [CLS] tok [SEP] | cls | teacher")
    tokens: Tokens = setting(
        Tokens.AUTO,
        "token vectors: alone as [CLS] tok [SEP], or averaged over corpus sentences (auto: context with a corpus)",
    )
    context_sentences: int = setting(100_000, "corpus sentences the teacher reads for context vectors")
    sif: Sif = setting(Sif.AUTO, "SIF weights: corpus frequencies (auto with a corpus) | zipf | none")
    sif_coefficient: float = setting(1e-4, "a in the SIF weight a / (a + p)")
    batch_size: int = setting(256, "teacher batch size")

    def __post_init__(self) -> None:
        settle(self)
        if self.dims < 1:
            raise ConfigError(f"dims={self.dims} must be >= 1")
        if self.vocab_size < 0:
            raise ConfigError(f"vocab_size={self.vocab_size} must be >= 0")
        if self.context_sentences < 1:
            raise ConfigError(f"context_sentences={self.context_sentences} must be >= 1")
        if self.features and self.corpus:
            raise ConfigError("give --features or --corpus, not both")
