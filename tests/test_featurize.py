"""Featurize: resume after SIGKILL, parts + merge, refusal of foreign stores, corrupt shards."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, make_bert

from potstill.features import store
from potstill.features.config import FeaturizeConfig
from potstill.features.featurize import featurize, merge_parts
from potstill.features.interop import export_tokenlearn, import_tokenlearn

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "is",
    "was",
    "and",
    "of",
    "to",
    "in",
    "it",
    "this",
    "that",
    "for",
    "with",
    "quick",
    "brown",
    "fox",
    "jumps",
    "lazy",
]


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = set()
    while len(lines) < n:
        lines.add(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + ".")
    path.write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    return path


def load_store(folder: Path) -> tuple[list[str], np.ndarray]:
    texts: list[str] = []
    embs = []
    for t, e in store.iter_store(folder):
        texts += t
        embs.append(e)
    return texts, np.concatenate(embs)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bert(tmp_path_factory.mktemp("feat") / "model")


def cfg(model: Path, corpus: Path, out: Path, **kw: object) -> FeaturizeConfig:
    base = {"teacher": str(model), "corpus": str(corpus), "out": str(out), "shard_size": 40, "batch_size": 16}
    return FeaturizeConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_sigkill_then_rerun_equals_uninterrupted(model: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", 12_000)
    ref_dir = featurize(cfg(model, corpus, tmp_path / "ref", shard_size=100))
    args = [
        sys.executable,
        "-m",
        "potstill.cli",
        "featurize",
        "--teacher",
        str(model),
        "--corpus",
        str(corpus),
    ]
    args += ["--out", str(tmp_path / "killed"), "--shard-size", "100", "--batch-size", "16"]
    proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "killed" / "shard-00000.json").exists():
            assert proc.poll() is None, "featurize ended before a shard was written"
            assert time.time() < deadline, "no shard after 120 s"
            time.sleep(0.01)
        assert proc.poll() is None, "featurize finished before it could be killed: make the corpus larger"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = tmp_path / "killed"
    assert not (killed / "manifest.json").exists()
    done_before = sum(1 for i in range(120) if store.ShardRecord.read(killed, i) is not None)
    assert 1 <= done_before < 120
    stale = killed / f"{store.shard_name(done_before)}.tmp999999.npy"  # what a kill inside np.save leaves
    stale.write_bytes(b"half a shard")
    res = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (
        f"{done_before} already complete" in res.stderr or f"{done_before - 1} already complete" in res.stderr
    )
    texts, emb = load_store(killed)
    ref_texts, ref_emb = load_store(ref_dir)
    assert texts == ref_texts and len(texts) == 12_000
    np.testing.assert_allclose(emb, ref_emb, atol=1e-6)
    assert not stale.exists() and not list(killed.glob("*tmp*"))  # the finished store keeps no temp files


def test_three_parts_merge_to_one_run(model: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", 300)
    ref_texts, ref_emb = load_store(featurize(cfg(model, corpus, tmp_path / "one")))
    parts = [featurize(cfg(model, corpus, tmp_path / f"p{i}", num_parts=3, part=i)) for i in range(3)]
    shard_sets = [json.loads((p / "manifest.json").read_text())["shards"] for p in parts]
    assert shard_sets == [[0, 3, 6], [1, 4, 7], [2, 5]]
    merged = merge_parts(parts, tmp_path / "merged")
    texts, emb = load_store(merged)
    assert texts == ref_texts
    np.testing.assert_allclose(emb, ref_emb, atol=1e-6)
    with pytest.raises(store.StoreError, match="exactly once"):
        merge_parts(parts[:2], tmp_path / "merged2")


def test_corrupt_shard_is_recomputed_and_foreign_store_refused(model: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    out = featurize(cfg(model, corpus, tmp_path / "s"))
    ref_texts, ref_emb = load_store(out)
    npy = out / "shard-00001.npy"
    npy.write_bytes(npy.read_bytes()[:-40])  # truncated: checksum no longer matches
    with pytest.raises(store.StoreError, match="checksum"):
        load_store(out)
    featurize(cfg(model, corpus, out))
    texts, emb = load_store(out)
    assert texts == ref_texts
    np.testing.assert_allclose(emb, ref_emb, atol=1e-6)
    other = make_bert(tmp_path / "other", pooling="cls")
    with pytest.raises(store.StoreError, match="refusing to mix"):
        featurize(cfg(other, corpus, out))
    with pytest.raises(store.StoreError, match="refusing to mix"):
        featurize(cfg(model, corpus, out, target="token-mean"))


def test_a_store_grows_from_a_smaller_one_beside_it(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", 200)
    ref_texts, ref_emb = load_store(featurize(cfg(model, corpus, tmp_path / "ref" / "s", max_sentences=150)))
    small = featurize(cfg(model, corpus, tmp_path / "features" / "s100", max_sentences=100))
    (small / "shard-00001.npy").write_bytes(b"broken")  # a donor's corrupt shard is not copied
    other = featurize(cfg(model, corpus, tmp_path / "features" / "tm", max_sentences=40, target="token-mean"))
    caplog.set_level("INFO", logger="potstill.features.featurize")
    grown = featurize(cfg(model, corpus, tmp_path / "features" / "s150", max_sentences=150))
    summary = [r.getMessage() for r in caplog.records if "featurized" in r.getMessage()][-1]
    # shard 0 from s100; shard 1 broken there, shard 2 (20 of s100's texts, 40 here) and 3 computed
    assert "(3 computed, 0 already complete, 1 copied" in summary, summary
    assert str(other) not in " ".join(r.getMessage() for r in caplog.records)  # other settings
    texts, emb = load_store(grown)
    assert texts == ref_texts
    np.testing.assert_allclose(emb, ref_emb, atol=1e-6)


def test_token_mean_target_and_prompt_recorded(model: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", 30)
    out = featurize(cfg(model, corpus, tmp_path / "tm", target="token-mean"))
    ident = json.loads((out / "store.json").read_text())
    assert ident["target"] == "token-mean" and ident["pooling"] == "token-mean"
    assert ident["normalized"] is False
    _, emb = load_store(out)
    assert not np.allclose(np.linalg.norm(emb, axis=1), 1.0)  # raw token means are not unit length


def test_tokenlearn_round_trip(model: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", 90)
    out = featurize(cfg(model, corpus, tmp_path / "s"))
    assert export_tokenlearn(out, tmp_path / "tl") == 90
    assert sorted(p.name for p in (tmp_path / "tl").iterdir())[:2] == ["feature_0.json", "feature_0.npy"]
    assert import_tokenlearn(tmp_path / "tl", tmp_path / "back") == 90
    t1, e1 = load_store(out)
    t2, e2 = load_store(tmp_path / "back")
    assert t1 == t2
    np.testing.assert_array_equal(e1, e2)


def test_cli_errors_name_the_problem(model: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "the cat sat."}\n{"body": "no text field"}\n', encoding="utf-8")
    res = run_cli("featurize", "--teacher", model, "--corpus", bad, "--out", tmp_path / "o")
    assert res.returncode == 2
    assert f"{bad}:2: no field 'text'" in res.stderr
    res = run_cli(
        "featurize", "--teacher", model, "--corpus", tmp_path / "missing.txt", "--out", tmp_path / "o"
    )
    assert res.returncode == 2 and "missing.txt does not exist" in res.stderr
    unreadable = tmp_path / "locked.txt"
    unreadable.write_text("the cat.\n", encoding="utf-8")
    unreadable.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        res = run_cli("featurize", "--teacher", model, "--corpus", unreadable, "--out", tmp_path / "o2")
        assert res.returncode == 2 and "locked.txt" in res.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    res = run_cli("featurize", "--teacher", model, "--corpus", empty, "--out", tmp_path / "o3")
    assert res.returncode == 2 and "gave no sentences" in res.stderr and "2 skipped (empty)" in res.stderr
