"""SIF weights per token: `w = a / (a + p(token))`, frequent tokens weigh less.

`p` comes from real corpus frequencies when a corpus is given (the static tokenizer run over it,
add-one smoothed), otherwise from Zipf's law over the row order (model2vec's default).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from tokenizers import Tokenizer


def zipf_probabilities(n: int) -> np.ndarray:
    """p(rank r) proportional to 1 / (r + 2) over rows 0..n-1, as model2vec estimates it."""
    inv_rank = 1.0 / np.arange(2, n + 2)
    return inv_rank / inv_rank.sum()


def corpus_probabilities(tokenizer: Tokenizer, texts: Iterable[str], batch: int = 4096) -> np.ndarray:
    """Token probabilities from the static tokenizer run over texts (add-one smoothing)."""
    size = tokenizer.get_vocab_size()
    counts = np.zeros(size, dtype=np.float64)
    chunk: list[str] = []

    def flush() -> None:
        encodings = tokenizer.encode_batch(chunk, add_special_tokens=False)
        ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64)
        counts[:] += np.bincount(ids, minlength=size)[:size]
        chunk.clear()

    for text in texts:
        chunk.append(text)
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    return (counts + 1.0) / (counts.sum() + size)


def sif_weights(probabilities: np.ndarray, coefficient: float) -> np.ndarray:
    """SIF weight per token; coefficient in (0, 1)."""
    if not 0.0 < coefficient < 1.0:
        raise ValueError(f"sif_coefficient={coefficient} must be in (0, 1); 1e-4 is a good default")
    return (coefficient / (coefficient + probabilities)).astype(np.float32)
