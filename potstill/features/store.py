"""The featurized store on disk: shards of (texts, float32 embeddings), written atomically.

Layout of a store folder:

    store.json           identity: teacher, weights sha256, target, prompt, dims, corpus spec,
                         shard size. A store is never mixed with another identity.
    shard-00000.jsonl    the shard's texts, one JSON string per line
    shard-00000.npy      float32 array (texts, dims), row i embeds line i
    shard-00000.json     the shard record (index, count, sha256 of both files): written last, so
                         a shard without a valid record is incomplete and gets recomputed
    manifest.json        the stage manifest, written when a run (or a part) completes

Shard k holds sentences [k * shard_size, (k + 1) * shard_size) of the corpus stream, whichever
machine computed it, so parts merge into exactly the store one run would write.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from potstill import manifest
from potstill.manifest import sha256_file

IDENTITY = "store.json"


class StoreError(ValueError):
    """A store that cannot be used as asked (another teacher, a corrupt shard, a gap)."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def texts_bytes(texts: list[str]) -> bytes:
    """The exact bytes of a shard's .jsonl file."""
    return "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")


@dataclass(frozen=True)
class ShardRecord:
    index: int
    count: int
    texts_sha256: str
    embeddings_sha256: str

    @classmethod
    def read(cls, folder: Path, index: int) -> ShardRecord | None:
        """The record of shard `index`, or None if it is missing or unreadable."""
        path = folder / f"{shard_name(index)}.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(raw["index"]), int(raw["count"]), raw["texts_sha256"], raw["embeddings_sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_shard(folder: Path, index: int, texts: list[str], embeddings: np.ndarray) -> ShardRecord:
    """Write texts, embeddings, then the record; each file atomically (temp file + rename)."""
    if embeddings.shape[0] != len(texts):
        raise ValueError(f"shard {index}: {len(texts)} texts but {embeddings.shape[0]} embeddings")
    if not np.isfinite(embeddings).all():
        raise StoreError(f"shard {index}: the teacher produced NaN or inf embeddings; not writing it")
    name = shard_name(index)
    data = texts_bytes(texts)
    _atomic_write(folder / f"{name}.jsonl", data)
    tmp = folder / f"{name}.tmp{os.getpid()}.npy"
    np.save(tmp, embeddings.astype(np.float32, copy=False))
    os.replace(tmp, folder / f"{name}.npy")
    record = ShardRecord(
        index, len(texts), hashlib.sha256(data).hexdigest(), sha256_file(folder / f"{name}.npy")
    )
    _atomic_write(folder / f"{name}.json", (json.dumps(record.__dict__, indent=2) + "\n").encode())
    return record


def remove_temps(folder: Path, indices: list[int]) -> int:
    """Delete the temp files a killed writer left for shards `indices` (all complete now); returns
    how many. Only this part's shards: other parts may share the folder and still be writing."""
    removed = 0
    for index in indices:
        for tmp in folder.glob(f"{shard_name(index)}.*tmp*"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def texts_key(texts: list[str]) -> tuple[int, str]:
    """(count, sha256 of the .jsonl bytes): what a shard's record says of exactly these texts."""
    return len(texts), hashlib.sha256(texts_bytes(texts)).hexdigest()


def shard_problem(folder: Path, index: int, key: tuple[int, str] | None = None) -> str | None:
    """Why shard `index` is not complete and sound (None when it is). With `key` (the expected
    texts' `texts_key`), also checks that it holds exactly those texts."""
    record = ShardRecord.read(folder, index)
    if record is None:
        return "no record"
    name = shard_name(index)
    for suffix in (".jsonl", ".npy"):
        if not (folder / f"{name}{suffix}").is_file():
            return f"{name}{suffix} missing"
    if key is not None:
        if record.count != key[0]:
            return f"holds {record.count} texts, the corpus gives {key[0]}"
        if key[1] != record.texts_sha256:
            return "texts differ from the corpus"
    if sha256_file(folder / f"{name}.jsonl") != record.texts_sha256:
        return "texts file checksum mismatch"
    if sha256_file(folder / f"{name}.npy") != record.embeddings_sha256:
        return "embeddings checksum mismatch"
    return None


def read_shard(folder: Path, index: int, verify: bool = True) -> tuple[list[str], np.ndarray]:
    """Texts and embeddings of a shard; a corrupt shard is an error naming it."""
    if verify:
        problem = shard_problem(folder, index)
        if problem:
            raise StoreError(f"{folder}/{shard_name(index)}: {problem}; rerun featurize to recompute it")
    name = shard_name(index)
    lines = (folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line) for line in lines]
    emb = np.load(folder / f"{name}.npy")
    if emb.shape[0] != len(texts):
        raise StoreError(f"{folder}/{name}: {len(texts)} texts but {emb.shape[0]} embeddings")
    return texts, emb


def read_identity(folder: Path) -> dict[str, Any] | None:
    path = folder / IDENTITY
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise StoreError(f"{path} is unreadable ({e}); remove the folder or pick another --out") from e
    return data if isinstance(data, dict) else None


def claim(folder: Path, identity: dict[str, Any]) -> None:
    """Make `folder` a store of `identity`, or refuse if it holds a store of another."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = read_identity(folder)
    if existing is None:
        if any(folder.glob("shard-*")):
            raise StoreError(f"{folder} holds shards but no {IDENTITY}; pick an empty --out")
        _atomic_write(folder / IDENTITY, (json.dumps(identity, indent=2, sort_keys=True) + "\n").encode())
        return
    if existing != identity:
        diff = sorted(k for k in set(existing) | set(identity) if existing.get(k) != identity.get(k))
        details = "; ".join(
            f"{k}: store has {existing.get(k)!r}, this run {identity.get(k)!r}" for k in diff[:3]
        )
        raise StoreError(
            f"{folder} is a store made with other settings ({details}); refusing to mix them. "
            "Use another --out, or delete the folder to start over."
        )


def _sized_apart(identity: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """An identity without its corpus's max_sentences, and that max_sentences."""
    corpus = dict(identity.get("corpus") or {})
    size = corpus.pop("max_sentences", None)
    return {**identity, "corpus": corpus}, size


def donors(folder: Path, identity: dict[str, Any]) -> list[Path]:
    """The stores beside `folder` made with the same settings but another `max_sentences` (a
    smaller or larger run over the same corpus): their shard k holds the same sentences as this
    store's shard k, up to the smaller size, so a complete one can be copied instead of computed.
    Unreadable neighbours are skipped, not fatal: they are not this store."""
    key, size = _sized_apart(identity)
    found = []
    for other in sorted(p for p in folder.parent.iterdir() if p.is_dir() and p != folder):
        try:
            theirs = read_identity(other)
        except StoreError:
            continue
        if theirs is not None:
            their_key, their_size = _sized_apart(theirs)
            if their_key == key and their_size != size:
                found.append(other)
    return found


def copy_shard(source: Path, folder: Path, index: int, texts: list[str], key: tuple[int, str]) -> bool:
    """Copy shard `index` from store `source` into `folder` when `source` holds it complete, sound
    and with exactly `texts` (whose `texts_key` is `key`); False (nothing written) otherwise."""
    if shard_problem(source, index, key) is not None:
        return False
    _, embeddings = read_shard(source, index, verify=False)  # shard_problem just checked both files
    write_shard(folder, index, texts, embeddings)
    return True


def iter_store(folder: str | Path, verify: bool = True) -> Iterator[tuple[list[str], np.ndarray]]:
    """Stream a complete store shard by shard (memory holds one shard at a time)."""
    f = Path(folder)
    data = manifest.read(f)
    if data.get("stage") not in ("featurize", "merge-features"):
        raise StoreError(f"{f} is a {data.get('stage')!r} output, not featurized features")
    for index in data["shards"]:
        yield read_shard(f, int(index), verify=verify)
