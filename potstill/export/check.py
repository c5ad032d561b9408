"""The reload check: the exported folder, reloaded with model2vec, against the source model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from model2vec import StaticModel
from tokenizers import Tokenizer

from potstill.export.config import ExportConfig, ExportError
from potstill.features import store
from potstill.features.corpus import CorpusSpec, iter_sentences
from potstill.textio import LineStats

_SPECIAL = re.compile(r"^(\[.*\]|<.*>)$")  # [CLS], [unused3], <s>, <pad>: not words


@dataclass(frozen=True)
class Check:
    """The reload check: per-sentence cosine between the source and the exported model."""

    sentences: int
    mean_cosine: float
    min_cosine: float

    def passed(self, cfg: ExportConfig) -> bool:
        """Both thresholds met."""
        return self.mean_cosine >= cfg.min_mean_cosine and self.min_cosine >= cfg.min_cosine

    def to_dict(self) -> dict[str, Any]:
        return {"sentences": self.sentences, "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine}


def _texts(source: str) -> Iterator[str]:
    """Sentences of a featurize store folder, or of a text file through the corpus readers."""
    path = Path(source)
    if path.is_dir():
        for texts, _ in store.iter_store(path, verify=False):
            yield from texts
        return

    yield from iter_sentences(CorpusSpec(source), LineStats())


def synthetic_sentences(tokenizer: Tokenizer, n: int, seed: int = 0) -> Iterator[str]:
    """Seeded random runs of 5-30 vocabulary words (no special tokens), joined by spaces."""
    special = {tok.content for tok in tokenizer.get_added_tokens_decoder().values() if tok.special}
    words = sorted(
        {t.removeprefix("##") for t in tokenizer.get_vocab() if t not in special and not _SPECIAL.match(t)}
        - {""}
    )
    if not words:
        raise ExportError(
            "the tokenizer has no ordinary tokens to build check sentences from; pass --check-texts"
        )
    rng = np.random.default_rng(seed)
    for _ in range(n):
        picks = rng.integers(0, len(words), size=int(rng.integers(5, 31)))
        yield " ".join(words[i] for i in picks)


def check_sentences(model: StaticModel, cfg: ExportConfig) -> list[str]:
    """Up to `check_sentences` sentences that the source model turns into at least one token."""
    # Synthetic sentences: a few spares, as a run of rare pieces may tokenize to nothing.
    pool = (
        _texts(cfg.check_texts)
        if cfg.check_texts
        else synthetic_sentences(model.tokenizer, 2 * cfg.check_sentences)
    )
    kept: list[str] = []
    for text in pool:
        if model.tokenize([text])[0]:  # a sentence of no tokens is a zero vector in both models
            kept.append(text)
            if len(kept) == cfg.check_sentences:
                break
    if not kept:
        where = cfg.check_texts or "the vocabulary"
        raise ExportError(f"no sentence from {where} has a token the model knows; pass other --check-texts")
    return kept


def reload_check(source: StaticModel, folder: Path, sentences: list[str]) -> Check:
    """Reload `folder` with model2vec and compare it with `source`, sentence by sentence."""
    reloaded = StaticModel.from_pretrained(folder)
    a = source.encode(sentences, normalize=True, use_multiprocessing=False).astype(np.float64)
    b = reloaded.encode(sentences, use_multiprocessing=False).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = (a * b).sum(axis=1) / np.maximum(norms, 1e-300)  # a zero vector scores 0: a failure
    return Check(len(sentences), float(cosine.mean()), float(cosine.min()))
