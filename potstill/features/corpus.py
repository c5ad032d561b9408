"""Corpus readers: Hugging Face `datasets` streaming, .txt(.gz), .jsonl(.gz) and .parquet.

`iter_sentences(cfg, stats)` yields the corpus as one deterministic stream of texts: read ->
optional sentence split -> length filter -> exact de-duplication -> seeded sampling ->
`max_sentences`. Every reader follows the input policy of `potstill.textio` (empty texts skipped
and counted; invalid UTF-8 an error naming file and line unless `skip_invalid`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from potstill.textio import InputError, LineStats, iter_lines, open_binary

HF_PREFIX = "hf:"
# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket) before
# whitespace and an upper-case letter, digit or quote; a few common abbreviations do not end one.
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[A-Z0-9])")
_ABBREV = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|e\.g|i\.e|No|Fig|Inc|Ltd|Co)\.$")


@dataclass(frozen=True)
class CorpusSpec:
    """Where the texts come from and how they are filtered (part of the featurize config)."""

    source: str  # a file path, or "hf:NAME[:CONFIG]" for Hugging Face datasets streaming
    text_field: str = "text"
    split_sentences: bool = False
    min_words: int = 1
    max_words: int = 10_000
    dedupe: bool = True
    sample_rate: float = 1.0
    seed: int = 0
    max_sentences: int | None = None
    skip_invalid: bool = False
    hf_split: str = "train"


def split_sentences(text: str) -> list[str]:
    """Split a document into sentences with a regex that keeps common abbreviations whole."""
    pieces: list[str] = []
    start = 0
    for m in _SPLIT.finditer(text):
        if _ABBREV.search(text[start : m.start()]):
            continue  # "Dr. Smith": not a sentence end
        candidate = (text[start : m.start()] + m.group(0).strip()).strip()
        if candidate:
            pieces.append(candidate)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def _iter_jsonl(path: Path, field: str, stats: LineStats, skip_invalid: bool) -> Iterator[str]:
    with open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                stats.skip("empty")
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                if skip_invalid:
                    stats.skip("invalid UTF-8")
                    continue
                raise InputError(
                    f"{path}:{lineno}: invalid UTF-8 ({e.reason}); fix the file or pass --skip-invalid"
                ) from e
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: not a JSON object ({e.msg})") from e
            if not isinstance(row, dict) or field not in row:
                raise InputError(
                    f"{path}:{lineno}: no field {field!r} in this row; pass --text-field NAME "
                    f"(fields here: {sorted(row) if isinstance(row, dict) else type(row).__name__})"
                )
            text = str(row[field] or "").strip()
            if not text:
                stats.skip("empty")
                continue
            yield text


def _iter_parquet(path: Path, field: str, stats: LineStats) -> Iterator[str]:
    import pyarrow.parquet as pq  # lazy: slow to import, needed by this reader only

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise InputError(f"cannot read {path} as parquet: {e}") from e
    if field not in pf.schema_arrow.names:
        raise InputError(f"{path}: no column {field!r}; columns: {pf.schema_arrow.names}; pass --text-field")
    for batch in pf.iter_batches(columns=[field], batch_size=8192):
        for value in batch.column(0).to_pylist():
            text = str(value or "").strip()
            if not text:
                stats.skip("empty")
                continue
            yield text


def _iter_hf(spec: CorpusSpec, stats: LineStats) -> Iterator[str]:
    """Stream a Hugging Face dataset, e.g. hf:allenai/c4:en (the real code users run online)."""
    from datasets import load_dataset  # lazy: slow to import (seconds), needed for hf: corpora only

    name, _, config = spec.source[len(HF_PREFIX) :].partition(":")
    try:
        ds = load_dataset(name, config or None, split=spec.hf_split, streaming=True)
    except Exception as e:
        raise InputError(
            f"cannot stream dataset {name!r} ({type(e).__name__}: {e}); offline, pass a local "
            "--corpus FILE (.txt, .txt.gz, .jsonl, .parquet) instead"
        ) from e
    for row in ds:
        if spec.text_field not in row:
            raise InputError(f"dataset {name!r} has no field {spec.text_field!r}; fields: {sorted(row)}")
        text = str(row[spec.text_field] or "").strip()
        if not text:
            stats.skip("empty")
            continue
        yield text


def iter_raw(spec: CorpusSpec, stats: LineStats) -> Iterator[str]:
    """The texts of the source, before splitting and filtering."""
    if spec.source.startswith(HF_PREFIX):
        yield from _iter_hf(spec, stats)
        return
    path = Path(spec.source)
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        yield from _iter_jsonl(path, spec.text_field, stats, spec.skip_invalid)
    elif name.endswith(".parquet"):
        if not path.is_file():
            raise InputError(f"{path} does not exist")
        yield from _iter_parquet(path, spec.text_field, stats)
    elif name.endswith((".txt", ".txt.gz", ".text", ".gz")) or path.is_file():
        yield from iter_lines(path, stats, skip_invalid=spec.skip_invalid)
    else:
        raise InputError(f"{path} does not exist; pass a .txt(.gz), .jsonl(.gz) or .parquet file, or hf:NAME")


def _keep(text: str, seed: int, rate: float) -> bool:
    """Deterministic sampling: the same text and seed always give the same answer."""
    digest = hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < rate


def iter_sentences(spec: CorpusSpec, stats: LineStats) -> Iterator[str]:
    """The corpus as filtered, de-duplicated, sampled sentences, in a deterministic order."""
    if not 0.0 < spec.sample_rate <= 1.0:
        raise ValueError(f"sample_rate={spec.sample_rate} must be in (0, 1]")
    seen: set[bytes] = set()
    kept = 0
    for doc in iter_raw(spec, stats):
        for text in split_sentences(doc) if spec.split_sentences else [doc]:
            words = len(text.split())
            if words < spec.min_words or words > spec.max_words:
                stats.skip("length filter")
                continue
            if spec.dedupe:
                key = hashlib.blake2b(text.encode(), digest_size=12).digest()
                if key in seen:
                    stats.skip("duplicate")
                    continue
                seen.add(key)
            if spec.sample_rate < 1.0 and not _keep(text, spec.seed, spec.sample_rate):
                stats.skip("not sampled")
                continue
            yield text
            kept += 1
            if spec.max_sentences is not None and kept >= spec.max_sentences:
                return
