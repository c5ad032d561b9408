"""The featurized store as training batches: a held-out split, tokenized shards, padded batches.

Shards are read one at a time, so memory does not grow with the corpus: each epoch visits the
shards in a seeded order and shuffles rows within a shard (a remainder carries into the next
shard). A sentence is held out when a CRC32 of its text falls under `val_fraction`, so the split
does not depend on shard order or size. Sentences are tokenized as model2vec encodes them: no
special tokens, the unknown token dropped, truncated to `max_tokens`; a sentence with no known
token is skipped.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from potstill import manifest
from potstill.features import store

ROW_BUCKET = 512  # a batch's row count is padded to a multiple of this: few shapes to compile


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray  # (touched,) the table rows (token ids) the batch uses, sorted
    counts: np.ndarray  # (batch, padded) float32: occurrences of rows[j] in sentence i; 0-padded
    teacher: np.ndarray  # (batch, width) the teacher's embeddings of the sentences
    same: np.ndarray  # (batch, batch) float32, 1.0 where two different rows hold the same text


def text_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def is_held_out(texts: list[str], fraction: float) -> np.ndarray:
    cut = int(fraction * 2**32)
    return np.array([text_hash(t) < cut for t in texts], dtype=bool)


class Tokenize:
    """Texts -> token id lists, as model2vec's `StaticModel.tokenize` does."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        unk = tokenizer.model.unk_token if hasattr(tokenizer.model, "unk_token") else None
        self.unk_id = tokenizer.token_to_id(unk) if unk else None

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for enc in self.tokenizer.encode_batch(texts, add_special_tokens=False):
            ids = np.asarray(enc.ids, dtype=np.int32)
            if self.unk_id is not None:
                ids = ids[ids != self.unk_id]
            out.append(ids[: self.max_tokens])
        return out


def collate(ids: list[np.ndarray], teacher: np.ndarray, hashes: np.ndarray) -> Batch:
    n = len(ids)
    flat = np.concatenate(ids)
    sentence = np.repeat(np.arange(n), [len(x) for x in ids])
    rows, local = np.unique(flat, return_inverse=True)
    padded = -(-len(rows) // ROW_BUCKET) * ROW_BUCKET
    counts = np.bincount(sentence * padded + local.ravel(), minlength=n * padded)
    same = np.equal.outer(hashes, hashes)
    np.fill_diagonal(same, False)
    return Batch(
        rows.astype(np.int64),
        counts.reshape(n, padded).astype(np.float32),
        teacher.astype(np.float32, copy=False),
        same.astype(np.float32),
    )


class FeatureData:
    """A featurized store split into training and held-out sentences."""

    def __init__(
        self,
        folder: str | Path,
        tokenize: Tokenize,
        val_fraction: float,
        val_max: int,
        max_sentences: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        info = manifest.read(self.folder)
        if info.get("stage") not in ("featurize", "merge-features"):
            raise store.StoreError(f"{self.folder} is a {info.get('stage')!r} output, not features")
        self.identity = store.read_identity(self.folder) or {}
        self.shards = [int(i) for i in info["shards"]]
        self.tokenize = tokenize
        self.val_fraction = val_fraction
        self.val_max = val_max
        self.max_sentences = max_sentences
        self._counts = self._shard_counts()
        self._validation: tuple[list[str], np.ndarray] | None = None
        self._train_size: int | None = None

    def _shard_counts(self) -> list[int]:
        counts = []
        for index in self.shards:
            record = store.ShardRecord.read(self.folder, index)
            if record is None:
                raise store.StoreError(f"{self.folder}: shard {index} has no record; rerun featurize")
            counts.append(record.count)
        return counts

    def _usable(self) -> list[tuple[int, int]]:
        """(shard index, rows used) within `max_sentences`."""
        left = self.max_sentences if self.max_sentences is not None else sum(self._counts)
        out = []
        for index, count in zip(self.shards, self._counts, strict=True):
            if left <= 0:
                break
            out.append((index, min(count, left)))
            left -= count
        return out

    def read(self, index: int, rows: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Texts, teacher embeddings and held-out flags of a shard's first `rows` rows."""
        texts, emb = store.read_shard(self.folder, index)
        texts, emb = texts[:rows], emb[:rows]
        if not np.isfinite(emb).all():
            raise store.StoreError(f"{self.folder}: shard {index} holds NaN or inf embeddings")
        held = is_held_out(texts, self.val_fraction)
        return texts, emb, held

    def validation(self) -> tuple[list[str], np.ndarray]:
        """The held-out sentences (at most `val_max`, in store order) and their embeddings."""
        if self._validation is None:
            texts: list[str] = []
            embs: list[np.ndarray] = []
            for index, rows in self._usable():
                t, e, held = self.read(index, rows)
                texts.extend(t[i] for i in np.flatnonzero(held))
                embs.append(e[held])
                if len(texts) >= self.val_max:
                    break
            width = int(self.identity.get("dims", 0)) or (embs[0].shape[1] if embs else 0)
            emb = np.concatenate(embs) if embs else np.zeros((0, width), np.float32)
            self._validation = (texts[: self.val_max], emb[: self.val_max])
        return self._validation

    def training_chunks(self) -> Iterator[tuple[list[str], np.ndarray]]:
        """Training rows shard by shard, in store order (for fitting the target PCA); a full pass
        also records the training size, so `train_size` need not read the shards again."""
        total = 0
        for index, rows in self._usable():
            texts, emb, held = self.read(index, rows)
            keep = np.flatnonzero(~held)
            total += len(keep)
            yield [texts[i] for i in keep], emb[keep]
        self._train_size = total

    def train_size(self) -> int:
        """Training sentences (read from the shards once, unless a full pass already counted them)."""
        if self._train_size is None:
            for _ in self.training_chunks():
                pass
        assert self._train_size is not None
        return self._train_size

    def batches(self, batch_size: int, seed: int, epoch: int, block: int = 1) -> Iterator[Batch]:
        """One epoch of full training batches, in an order fixed by (seed, epoch). With `block` > 1
        a shard's sentences are shuffled in runs of `block` neighbours (in corpus order: mostly one
        document's), so a batch holds related sentences as hard in-batch negatives."""
        rng = np.random.default_rng([seed, epoch])
        usable = self._usable()
        carry_ids: list[np.ndarray] = []
        carry_emb: list[np.ndarray] = []
        carry_hash: list[int] = []
        for k in rng.permutation(len(usable)):
            index, rows = usable[int(k)]
            texts, emb, held = self.read(index, rows)
            keep = np.flatnonzero(~held)
            ids = self.tokenize([texts[i] for i in keep])
            order = block_order(rng, len(keep), block)
            for j in order:
                if len(ids[j]) == 0:
                    continue
                carry_ids.append(ids[j])
                carry_emb.append(emb[keep[j]])
                carry_hash.append(text_hash(texts[keep[j]]))
                if len(carry_ids) == batch_size:
                    yield collate(carry_ids, np.stack(carry_emb), np.array(carry_hash))
                    carry_ids, carry_emb, carry_hash = [], [], []

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.train_size() // batch_size


def block_order(rng: np.random.Generator, n: int, block: int) -> np.ndarray:
    """A permutation of range(n) that keeps runs of `block` consecutive indices together."""
    if block <= 1:
        return rng.permutation(n)
    starts = rng.permutation(np.arange(0, n, block))
    return np.concatenate([np.arange(s, min(s + block, n)) for s in starts] or [np.arange(0)])


def fixed_batches(tokenize: Tokenize, texts: list[str], teacher: np.ndarray, batch_size: int) -> list[Batch]:
    """Batches of the held-out set, in order (the last one may be smaller)."""
    ids = tokenize(texts)
    keep = [i for i, x in enumerate(ids) if len(x)]
    out = []
    for start in range(0, len(keep), batch_size):
        rows = keep[start : start + batch_size]
        if len(rows) < 2:
            break
        hashes = np.array([text_hash(texts[i]) for i in rows])
        out.append(collate([ids[i] for i in rows], teacher[rows], hashes))
    return out
