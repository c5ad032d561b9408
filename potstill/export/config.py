"""`potstill export`'s settings: a trained model folder into a compact model2vec folder."""

from __future__ import annotations

from dataclasses import dataclass

from potstill.config import Choice, ConfigError, setting, settle


class ExportError(ValueError):
    """An export that cannot be made or does not reload faithfully; the message says what to do."""


class DType(Choice):
    """The exported table's dtype."""

    INT8 = "int8"
    FLOAT16 = "float16"
    FLOAT32 = "float32"


@dataclass(frozen=True)
class ExportConfig:
    """`potstill export`: a trained model folder into a compact model2vec folder with its card."""

    model: str = setting(
        "", "model2vec folder (potstill train's OUT/final, or any)", metavar="MODEL_DIR", positional="?"
    )
    out: str = setting("", "the exported folder (replaced only when the reload check passes)")
    dtype: DType = setting(DType.INT8, "table dtype (default int8)")
    vocab_quantize: int | None = setting(
        None, "cluster the rows into K (model2vec's `mapping` layout)", metavar="K"
    )
    sentence_transformers: bool = setting(
        True,
        "int8: also write 0_StaticEmbedding/ (the same int8 table with its scale as per-token "
        "`weights`, which sentence-transformers folds to float32; doubles the folder)",
    )
    check_texts: str | None = setting(
        None, "reload-check sentences: a text file or a featurize store (default: from the vocabulary)"
    )
    check_sentences: int = setting(1000, "sentences in the reload check")
    min_mean_cosine: float = setting(0.999, "the reload check's least mean cosine to the float model")
    min_cosine: float = setting(0.99, "the reload check's least single cosine")
    push_to_hub: str | None = setting(None, "hub repo id to upload to", metavar="REPO")
    private: bool = setting(False, "create the hub repo private")
    name: str | None = setting(None, "model name in the card (default: the --out folder name)")
    # Filled from the command's --recipe (the TOML whose [export] table fills this config).
    recipe: str | None = setting(None, "the recipe file, quoted in the card", flag="")

    def __post_init__(self) -> None:
        settle(self)
        if self.vocab_quantize is not None and self.vocab_quantize < 1:
            raise ConfigError(
                f"vocab_quantize={self.vocab_quantize} must be >= 1 (clusters), or unset to keep every row"
            )
        if self.check_sentences < 1:
            raise ConfigError(f"check_sentences={self.check_sentences} must be >= 1")
        for key in ("min_mean_cosine", "min_cosine"):
            if not -1.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key}={getattr(self, key)} must be a cosine in [-1, 1]")
        if self.private and not self.push_to_hub:
            raise ConfigError("private=true needs an upload: add --push-to-hub REPO or drop --private")
        repo = self.push_to_hub
        if repo is not None and (not repo.strip("/") or repo.count("/") > 1):
            raise ConfigError(f"push_to_hub={self.push_to_hub!r} should be a hub repo id: OWNER/NAME or NAME")
