"""The fidelity screen: neighbour retention and cosines, the retrieval subset, NDCG@10 through mteb,
and `potstill quantize --screen` end to end on a tiny random BERT."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from blocks import uniform_block

from potstill.quantize import screen


def _brute_neighbours(emb: np.ndarray, k: int) -> np.ndarray:
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def test_neighbours_match_a_full_sort_in_any_chunking():
    emb = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    want = _brute_neighbours(emb, 10)
    for chunk in (3, 16, 1024):
        np.testing.assert_array_equal(screen.neighbours(emb, 10, chunk=chunk), want)
    with pytest.raises(ValueError, match="k=10 neighbours need more than k sentences"):
        screen.neighbours(emb[:10], 10)


def test_points_on_a_circle_have_their_adjacent_angles_as_neighbours():
    angles = np.arange(12) * (2 * math.pi / 12) + 0.002 * np.arange(12) ** 1.5  # no ties
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    nn1 = screen.neighbours(emb, 2)
    for i, row in enumerate(nn1):
        assert set(row) == {(i - 1) % 12, (i + 1) % 12}


def test_fidelity_is_perfect_for_the_same_embeddings_and_falls_with_noise():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(200, 16)).astype(np.float32)
    same = screen.fidelity(ref, ref * 3.0)  # scale does not matter: cosine
    assert (same.mean_cos, same.top1, same.top10) == (pytest.approx(1.0), 1.0, 1.0)
    small = screen.fidelity(ref, ref + 0.05 * rng.normal(size=ref.shape))
    large = screen.fidelity(ref, ref + 0.5 * rng.normal(size=ref.shape))
    assert 1.0 > small.mean_cos > large.mean_cos and small.min_cos >= large.min_cos
    assert 1.0 >= small.top10 > large.top10 > 0.0 and small.top1 > large.top1
    # Retention is the mean share of each row's reference set found again.
    ref_nn, got_nn = _brute_neighbours(ref, 10), _brute_neighbours(ref + 0.5 * rng.normal(size=ref.shape), 10)
    manual = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref_nn, got_nn, strict=True)])
    assert screen.retention(ref_nn, got_nn) == pytest.approx(manual)


def _beir(folder, n_docs=14):
    words = ["cat", "dog", "fox", "mat", "world", "lazy", "quick", "brown", "walk", "talk", "run", "play"]
    (folder / "qrels").mkdir(parents=True)
    docs = [
        {
            "_id": f"d{i}",
            "title": "",
            "text": f"the {words[i % 12]} and the {words[(5 * i + 1) % 12]} sat" + " over it" * (i // 12),
        }
        for i in range(n_docs)
    ]
    queries = [{"_id": f"q{i}", "text": f"a {words[i]} {words[i + 4]}"} for i in range(4)]
    qrels = [("q0", "d1"), ("q0", "d5"), ("q1", "d2"), ("q2", "d7"), ("q3", "d11")]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels)
    )
    spec = {
        "name": "SciFact",
        "type": "Retrieval",
        "main_score": "ndcg_at_10",
        "mteb_task": "SciFact",
        "splits": {"test": 4},
    }
    (folder / "task.json").write_text(json.dumps(spec))
    return folder


def test_retrieval_subset_keeps_every_relevant_document(tmp_path):
    folder = _beir(tmp_path / "beir")
    full = screen.retrieval_task(folder)
    assert len(full.tables["corpus"]["id"]) == 14
    sub = screen.retrieval_task(folder, docs=3, seed=0)
    ids = sub.tables["corpus"]["id"]
    assert len(ids) == 5 + 3 and {"d1", "d5", "d2", "d7", "d11"} <= set(ids)
    assert sub.tables["corpus"]["text"][ids.index("d7")] == full.tables["corpus"]["text"][7]
    assert screen.retrieval_task(folder, docs=3, seed=0).tables == sub.tables  # seeded
    assert screen.retrieval_task(folder, docs=100).tables["corpus"]["id"] == full.tables["corpus"]["id"]


def _ndcg10(teacher, data) -> float:
    """Binary-relevance NDCG@10 from the teacher's own embeddings (an independent reference)."""
    corpus, queries = data.tables["corpus"], data.tables["queries"]
    docs = teacher.encode([f"{t} {x}".strip() for t, x in zip(corpus["title"], corpus["text"], strict=True)])
    qs = teacher.encode(queries["text"])
    scores = []
    for qi, qid in enumerate(queries["id"]):
        rel = data.qrels[qid]
        order = np.argsort(-(docs @ qs[qi]))[:10]
        dcg = sum(1 / math.log2(r + 2) for r, d in enumerate(order) if corpus["id"][d] in rel)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), 10)))
        scores.append(dcg / idcg)
    return float(np.mean(scores))


def test_screen_with_ndcg_through_mteb(tmp_path, tiny_bert, sentences):
    pytest.importorskip("mteb")
    from potstill.teacher.teacher import Teacher

    data = screen.retrieval_task(_beir(tmp_path / "beir"))
    float_t = Teacher.load(tiny_bert)
    q4 = Teacher.load(tiny_bert, quantization=uniform_block(4, 32))
    texts = sentences + [f"{s} and the dog" for s in sentences]
    result = screen.screen(float_t, q4, texts, retrieval=data)
    assert result.ndcg_at_10["float"] == pytest.approx(_ndcg10(float_t, data), abs=1e-4)
    assert result.ndcg_at_10["quantized"] == pytest.approx(_ndcg10(q4, data), abs=1e-4)
    assert result.ndcg_at_10["float"] != result.ndcg_at_10["quantized"]  # each teacher ranked its own way
    assert result.retrieval == {"task": "SciFact", "documents": 14, "queries": 4}
    f = result.fidelity
    assert f.sentences == 16 and 0.9 < f.mean_cos < 1.0 and f.min_cos <= f.mean_cos
    assert set(result.tokens_per_s) == {"float", "quantized"} and min(result.tokens_per_s.values()) > 0


def test_cli_screen_compares_and_saves(tmp_path, make_bert, run_cli, sentences):
    src = make_bert(tmp_path / "m", layers=4)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(
            [
                *sentences,
                *(f"the {w} was {v}." for w in ("cat", "dog", "fox") for v in ("quick", "lazy", "brown")),
            ]
        )
    )
    res = run_cli(
        "quantize",
        "--teacher",
        src,
        "--scheme",
        "crush_middle",
        "--screen",
        "--corpus",
        corpus,
        "--sentences",
        "15",
    )
    assert res.returncode == 0, res.stderr
    assert "sentences: 15" in res.stdout and "top-10 retention:" in res.stdout
    out = tmp_path / "q8"
    res8 = run_cli("quantize", "--teacher", src, "--bits", "8", "--screen", "--corpus", corpus, "--out", out)
    assert res8.returncode == 0, res8.stderr
    saved = json.loads((out / "screen.json").read_text())
    assert saved["block"] == uniform_block(8) and saved["fidelity"]["sentences"] == 17
    assert saved["fidelity"]["mean_cos"] > 0.999  # 8-bit everywhere barely moves a tiny BERT
    assert (out / "config.json").is_file() and (out / "manifest.json").is_file()
    bad = run_cli("quantize", "--teacher", src, "--screen", "--out", out)
    assert bad.returncode == 2 and "need --corpus FILE" in bad.stderr
