"""Embed every vocabulary entry through the teacher: the rows of the first static table.

A teacher token is fed as `[CLS] token [SEP]` (MPNet: `<s> token </s>`, whatever the tokenizer
adds around a text); a new corpus word as `[CLS] its pieces [SEP]`
(never padded beyond its batch: FINDINGS.md shows what padding every word to 128 costs).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from potstill.teacher.teacher import Teacher

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "teacher")


def token_ids(teacher: Teacher, tokens: list[str]) -> list[list[int]]:
    """Teacher input ids for each token: the tokenizer's opening id, the token's id, its closing id
    ([CLS] id [SEP]) when it is one teacher token; else the tokenizer's encoding of it."""
    vocab = teacher.tokenizer.get_vocab()
    around = teacher.tokenizer.encode("", add_special_tokens=True).ids  # [CLS, SEP], [<s>, </s>]
    out: list[list[int]] = []
    for tok in tokens:
        tid = vocab.get(tok)
        if tid is not None and len(around) == 2:
            out.append([around[0], tid, around[1]])
        else:
            out.append(teacher.tokenizer.encode(tok, add_special_tokens=True).ids)
    return out


def embed_tokens(
    teacher: Teacher, tokens: list[str], pooling: str = "mean", batch_size: int = 256
) -> np.ndarray:
    """(len(tokens), teacher width) float32: each token through the teacher, pooled, unnormalized."""
    if pooling not in POOLINGS:
        raise ValueError(f"token pooling {pooling!r} is not known; use one of {POOLINGS}")
    ids = token_ids(teacher, tokens)
    start = time.perf_counter()
    emb = teacher.encode_ids(
        ids, batch_size=batch_size, pooling=None if pooling == "teacher" else pooling, normalize=False
    )
    seconds = time.perf_counter() - start
    n_tok = sum(len(i) for i in ids)
    logger.info(
        "embedded %d vocabulary entries (%d teacher tokens) in %.1f s: %.0f tokens/s",
        len(tokens),
        n_tok,
        seconds,
        n_tok / max(seconds, 1e-9),
    )
    return np.nan_to_num(emb)
