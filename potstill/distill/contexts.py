"""Token vectors from real sentences: each vocabulary entry as the teacher sees it in context.

model2vec embeds a token alone, as `[CLS] tok [SEP]`. Here the teacher reads corpus sentences
instead, and a token's row is the mean of its last-layer outputs over every occurrence (a new
corpus word: the mean over its pieces, per occurrence). The teacher's mean-pooled sentence
embedding is the mean of these same outputs, so the mean of the context-averaged rows is a
first-order model of it: before any training this table scores ~2 points of dev score above
the isolated one (BENCHMARKS.md). Entries never seen fall back to their isolated embedding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import numpy as np
import scipy.sparse as sp

from potstill.distill.vocab import words_of
from potstill.teacher.teacher import Teacher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Contexts:
    """Per vocabulary entry: summed contextual outputs (rows, width) and occurrence counts."""

    sums: np.ndarray
    counts: np.ndarray
    sentences: int

    def vectors(self, fallback: np.ndarray) -> np.ndarray:
        """Mean context vectors; unseen rows take `fallback`, rescaled to the seen rows' mean norm."""
        seen = self.counts > 0
        means = self.sums[seen] / self.counts[seen, None]
        out = fallback.astype(np.float64).copy()
        if seen.any():
            scale = np.linalg.norm(means, axis=1).mean() / max(np.linalg.norm(fallback, axis=1).mean(), 1e-12)
            out *= scale
            out[seen] = means
        return out.astype(np.float32)


def teacher_rows(teacher: Teacher, tokens: list[str], n_teacher: int) -> np.ndarray:
    """For every teacher token id, its row in `tokens` (its first `n_teacher` entries), or -1."""
    rows = np.full(teacher.tokenizer.get_vocab_size(), -1, dtype=np.int64)
    vocab = teacher.tokenizer.get_vocab()
    for row, tok in enumerate(tokens[:n_teacher]):
        tid = vocab.get(tok)
        if tid is not None:
            rows[tid] = row
    return rows


def collect(
    teacher: Teacher,
    tokens: list[str],
    n_teacher: int,
    texts: Iterable[str],
    max_sentences: int,
    batch_size: int = 64,
) -> Contexts:
    """Run up to `max_sentences` texts through the teacher and sum each entry's contextual outputs.

    Teacher wordpieces (the first `n_teacher` entries) gather every position that holds them,
    the added [CLS]/[SEP] left out; a corpus word (the entries after) gathers, per occurrence, the
    mean over the positions of its pieces.
    """
    start = time.perf_counter()
    batch = [t for t in islice(texts, max_sentences) if t.strip()]
    if not batch:
        raise ValueError("context token vectors need corpus sentences, and the corpus gave none")
    rows = teacher_rows(teacher, tokens, n_teacher)
    words = {w: n_teacher + i for i, w in enumerate(tokens[n_teacher:])}
    encodings = teacher.tokenizer.encode_batch(batch, add_special_tokens=True)
    ids = [e.ids for e in encodings]
    sums = np.zeros((len(tokens), teacher.dim), dtype=np.float64)
    counts = np.zeros(len(tokens), dtype=np.int64)
    for idx, hidden, padded in teacher.hidden_states(ids, batch_size=batch_size):
        inner = padded.copy()
        inner[:, 0] = -1  # [CLS]
        inner[np.arange(len(inner)), (padded >= 0).sum(axis=1) - 1] = -1  # the closing [SEP]
        pos = inner >= 0
        target = rows[inner[pos]]
        keep = target >= 0
        vecs = hidden[pos][keep]
        target = target[keep]
        onehot = sp.csr_matrix(
            (np.ones(len(target)), (target, np.arange(len(target)))), shape=(len(tokens), len(target))
        )
        sums += onehot @ vecs
        counts += np.bincount(target, minlength=len(tokens))
        if words:
            _add_words(sums, counts, words, hidden, idx, [encodings[i] for i in idx], batch, teacher)
    seconds = time.perf_counter() - start
    n_tok = int((np.array([len(i) for i in ids])).sum())
    logger.info(
        "context vectors from %d sentences (%d teacher tokens) in %.0f s: %.0f tokens/s; %d of %d entries seen",
        len(batch),
        n_tok,
        seconds,
        n_tok / max(seconds, 1e-9),
        int((counts > 0).sum()),
        len(tokens),
    )
    return Contexts(sums, counts, len(batch))


def _add_words(
    sums: np.ndarray,
    counts: np.ndarray,
    words: dict[str, int],
    hidden: np.ndarray,
    idx: np.ndarray,
    encodings: list,
    texts: list[str],
    teacher: Teacher,
) -> None:
    """Add each corpus-word occurrence of a batch: the mean of its pieces' outputs."""
    for b, (i, enc) in enumerate(zip(idx, encodings, strict=True)):
        sentence_words = words_of(teacher.tokenizer, texts[i])
        wanted = {wi for wi, w in enumerate(sentence_words) if w in words}
        if not wanted:
            continue
        spans: dict[int, list[int]] = {}
        for p, wi in enumerate(enc.word_ids):
            if wi in wanted and p < hidden.shape[1]:
                spans.setdefault(wi, []).append(p)
        for wi, positions in spans.items():
            row = words[sentence_words[wi]]
            sums[row] += hidden[b, positions].mean(axis=0)
            counts[row] += 1
