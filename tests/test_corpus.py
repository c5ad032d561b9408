"""Corpus readers: txt/gz/jsonl/parquet, sentence splitting, filters, dedupe, seeded sampling."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from potstill.features.corpus import CorpusSpec, iter_sentences, split_sentences
from potstill.textio import InputError, LineStats


def read(spec: CorpusSpec) -> tuple[list[str], LineStats]:
    stats = LineStats()
    return list(iter_sentences(spec, stats)), stats


def test_txt_gz_jsonl_parquet_give_the_same_texts(tmp_path: Path) -> None:
    texts = ["one two three.", "four five six.", "seven eight."]
    (tmp_path / "a.txt").write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(texts))
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"body": t}) + "\n" for t in texts), encoding="utf-8"
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": texts}), tmp_path / "a.parquet")
    assert read(CorpusSpec(str(tmp_path / "a.txt")))[0] == texts
    assert read(CorpusSpec(str(tmp_path / "a.txt.gz")))[0] == texts
    assert read(CorpusSpec(str(tmp_path / "a.jsonl"), text_field="body"))[0] == texts
    assert read(CorpusSpec(str(tmp_path / "a.parquet"), text_field="body"))[0] == texts
    with pytest.raises(InputError, match="no column 'text'"):
        read(CorpusSpec(str(tmp_path / "a.parquet")))


def test_split_filter_dedupe_and_max(tmp_path: Path) -> None:
    doc = 'Dr. Smith went home. He slept well! Did he? "Yes." The U.S. army came at 5 p.m. today.'
    assert split_sentences(doc) == [
        "Dr. Smith went home.",
        "He slept well!",
        "Did he?",
        '"Yes."',
        "The U.S. army came at 5 p.m. today.",
    ]
    f = tmp_path / "d.txt"
    f.write_text(f"{doc}\n{doc}\nshort\n", encoding="utf-8")
    got, stats = read(CorpusSpec(str(f), split_sentences=True, min_words=2))
    assert got == ["Dr. Smith went home.", "He slept well!", "Did he?", "The U.S. army came at 5 p.m. today."]
    assert stats.skipped["duplicate"] == 4 and stats.skipped["length filter"] == 3
    got, _ = read(CorpusSpec(str(f), split_sentences=True, max_sentences=2))
    assert len(got) == 2


def test_sampling_is_deterministic_and_seeded(tmp_path: Path) -> None:
    f = tmp_path / "n.txt"
    f.write_text("\n".join(f"sentence number {i}." for i in range(2000)), encoding="utf-8")
    a, _ = read(CorpusSpec(str(f), sample_rate=0.25, seed=1))
    b, _ = read(CorpusSpec(str(f), sample_rate=0.25, seed=1))
    c, _ = read(CorpusSpec(str(f), sample_rate=0.25, seed=2))
    assert a == b and a != c
    assert 400 < len(a) < 600


def test_invalid_utf8_and_unknown_source(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b'{"text": "fine."}\n{"text": "\xff\xfe"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: invalid UTF-8"):
        read(CorpusSpec(str(f)))
    got, stats = read(CorpusSpec(str(f), skip_invalid=True))
    assert got == ["fine."] and stats.skipped == {"invalid UTF-8": 1}
    with pytest.raises(InputError, match="does not exist"):
        read(CorpusSpec(str(tmp_path / "nope.parquet")))
