"""Distill on a tiny random BERT: vocabulary, tokenizer, PCA, SIF weights, model2vec loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_bert
from model2vec import StaticModel

from potstill.distill.build import distill
from potstill.distill.config import DistillConfig
from potstill.distill.pca import fit_pca
from potstill.distill.tokens import token_ids
from potstill.distill.vocab import VocabularyError, static_tokenizer, teacher_tokens
from potstill.distill.weighting import sif_weights, zipf_probabilities
from potstill.features import store
from potstill.features.config import FeaturizeConfig
from potstill.features.featurize import featurize
from potstill.teacher.teacher import Teacher

CORPUS = [
    "the zebra walked over the zebra bridge.",
    "a zebra and a quokka played.",
    "the quokka is a quokka.",
    "zebra zebra quokka the cat sat.",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bert(tmp_path_factory.mktemp("distill") / "model")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    return p


def test_vocabulary_order_and_new_words_are_single_ids(model: Path, corpus: Path, tmp_path: Path) -> None:
    out = distill(
        DistillConfig(teacher=str(model), out=str(tmp_path / "m"), dims=8, corpus=str(corpus), vocab_size=5)
    )
    teacher = Teacher.load(model)
    base = teacher_tokens(teacher.tokenizer)
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    ordered = sorted(vocab, key=vocab.__getitem__)
    # teacher tokens first, in id order; then corpus words by frequency (zebra x6, quokka x4)
    assert ordered[: len(base)] == base
    assert ordered[len(base) :] == ["zebra", "quokka"]
    static = StaticModel.from_pretrained(out)
    assert static.embedding.shape == (len(base) + 2, 8)
    assert static.tokenizer.encode("zebra quokka", add_special_tokens=False).ids == [len(base), len(base) + 1]
    assert json.loads((out / "tokenizer.json").read_text())["post_processor"] is None
    emb = static.encode(["the zebra sat.", "quokka"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_teacher_only_matches_model2vec_algorithm(model: Path, tmp_path: Path) -> None:
    """Zipf SIF over the row order, PCA of [CLS] tok [SEP] means: recomputed here by hand."""
    out = distill(DistillConfig(teacher=str(model), out=str(tmp_path / "m"), dims=6))
    teacher = Teacher.load(model)
    tokens = teacher_tokens(teacher.tokenizer)
    ids = token_ids(teacher, tokens)
    assert ids[tokens.index("cat")] == [2, teacher.tokenizer.token_to_id("cat"), 3]
    raw = np.stack([teacher.encode_ids([i], pooling="mean", normalize=False)[0] for i in ids])
    centred = raw - raw.mean(0)
    vals, vecs = np.linalg.eigh(np.cov(centred.T))
    comps = vecs[:, np.argsort(vals)[::-1][:6]]
    scores = centred @ comps
    # scikit-learn's sign rule (potstill.distill.pca): each component's largest coefficient positive
    scores *= np.sign(comps[np.argmax(np.abs(comps), axis=0), np.arange(6)])
    p = 1 / np.arange(2, len(tokens) + 2)
    expected = scores * (1e-4 / (1e-4 + p / p.sum()))[:, None]
    got = StaticModel.from_pretrained(out).embedding
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


def test_corpus_sif_from_features_and_foreign_features_refused(
    model: Path, corpus: Path, tmp_path: Path
) -> None:
    feats = featurize(
        FeaturizeConfig(teacher=str(model), corpus=str(corpus), out=str(tmp_path / "f"), shard_size=2)
    )
    out = distill(
        DistillConfig(teacher=str(model), out=str(tmp_path / "m"), dims=8, features=str(feats), vocab_size=5)
    )
    meta = json.loads((out / "manifest.json").read_text())
    assert meta["sif"] == "corpus" and meta["rows"] == meta["teacher_tokens"] + 2
    other = make_bert(tmp_path / "other", layers=1)
    with pytest.raises(store.StoreError, match="featurize with this teacher"):
        distill(DistillConfig(teacher=str(other), out=str(tmp_path / "m2"), dims=8, features=str(feats)))


def test_bad_dims_and_empty_vocabulary(model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exceeds the teacher width 64"):
        distill(DistillConfig(teacher=str(model), out=str(tmp_path / "a"), dims=65))
    with pytest.raises(ValueError, match="exceeds the vocabulary size"):
        fit_pca(np.zeros((5, 10), np.float32), 6)
    teacher = Teacher.load(model)
    with pytest.raises(VocabularyError, match="empty"):
        teacher_tokens(teacher.tokenizer, remove_pattern=".*")
    with pytest.raises(VocabularyError, match="unknown token"):
        static_tokenizer(teacher.tokenizer, ["cat", "dog"])


def test_pca_and_sif_basics() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 10)) * np.arange(1, 11)
    pca = fit_pca(x.astype(np.float32), 3)
    assert pca.components.shape == (3, 10)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(3), atol=1e-5)
    assert np.argmax(np.abs(pca.components[0])) == 9  # largest variance axis first
    w = sif_weights(zipf_probabilities(100), 1e-4)
    assert np.all(np.diff(w) > 0) and w[0] < 0.01 < w[-1] < 1
    with pytest.raises(ValueError, match="sif_coefficient"):
        sif_weights(zipf_probabilities(3), 1.5)


def test_cli_distill(model: Path, corpus: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    res = run_cli(
        "distill",
        "--teacher",
        model,
        "--dims",
        "8",
        "--corpus",
        corpus,
        "--vocab-size",
        "2",
        "--out",
        tmp_path / "m",
    )
    assert res.returncode == 0, res.stderr
    assert StaticModel.from_pretrained(tmp_path / "m").embedding.shape[1] == 8
    res = run_cli("distill", "--teacher", model, "--dims", "999", "--out", tmp_path / "m2")
    assert res.returncode == 2 and "dims=999 exceeds the teacher width 64" in res.stderr


def _reference_contexts(numpy_bert, model: Path, texts: list[str], token: str, word: str) -> tuple:  # type: ignore[no-untyped-def]
    """Mean output of `token` over its positions, and of `word` over its occurrences (each the
    mean over its pieces), one sentence at a time through the numpy reference BERT."""
    ref = numpy_bert(model)
    tid = ref.tokenizer.token_to_id(token)
    tok_vecs, word_vecs = [], []
    for text in texts:
        enc = ref.tokenizer.encode(text)
        ids = np.array([enc.ids])
        hidden = ref.hidden(ids, np.ones_like(ids))[0]
        words = [
            w
            for w, _ in ref.tokenizer.pre_tokenizer.pre_tokenize_str(
                ref.tokenizer.normalizer.normalize_str(text)
            )
        ]
        for p, i in enumerate(enc.ids[1:-1], start=1):
            if i == tid:
                tok_vecs.append(hidden[p])
        for wi, w in enumerate(words):
            if w == word:
                pos = [p for p, x in enumerate(enc.word_ids) if x == wi]
                word_vecs.append(hidden[pos].mean(axis=0))
    return np.mean(tok_vecs, axis=0), len(tok_vecs), np.mean(word_vecs, axis=0), len(word_vecs)


def test_context_vectors_match_a_per_sentence_reference(model: Path, numpy_bert) -> None:  # type: ignore[no-untyped-def]
    from potstill.distill.contexts import collect

    teacher = Teacher.load(model)
    base = teacher_tokens(teacher.tokenizer)
    assert len(teacher.tokenizer.encode("zebra", add_special_tokens=False).ids) > 1  # a multi-piece word
    tokens = [*base, "zebra"]
    ctx = collect(teacher, tokens, len(base), iter(CORPUS), max_sentences=10, batch_size=2)
    tok_mean, tok_n, word_mean, word_n = _reference_contexts(numpy_bert, model, CORPUS, "the", "zebra")
    row = base.index("the")
    assert ctx.counts[row] == tok_n == 4 and ctx.counts[-1] == word_n == 5
    fallback = np.ones((len(tokens), teacher.dim), dtype=np.float32)
    vectors = ctx.vectors(fallback)
    np.testing.assert_allclose(vectors[row], tok_mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(vectors[-1], word_mean, rtol=1e-3, atol=1e-4)
    # [CLS]/[SEP] are never gathered; an unseen entry keeps its (rescaled) fallback
    assert ctx.counts[base.index("[CLS]")] == 0 and ctx.counts[base.index("[SEP]")] == 0
    unseen = int(np.argmin(ctx.counts))
    assert ctx.counts[unseen] == 0
    seen_norm = np.linalg.norm(vectors[ctx.counts > 0], axis=1).mean()
    np.testing.assert_allclose(
        vectors[unseen], np.full(teacher.dim, seen_norm / np.sqrt(teacher.dim)), rtol=1e-4
    )
    # only the first max_sentences texts are read
    assert collect(teacher, tokens, len(base), iter(CORPUS), max_sentences=1).counts[-1] == 2
    with pytest.raises(ValueError, match="corpus gave none"):
        collect(teacher, tokens, len(base), iter(["", "  "]), max_sentences=10)


def test_distill_with_context_tokens(model: Path, corpus: Path, tmp_path: Path) -> None:
    cfg = DistillConfig(teacher=str(model), out=str(tmp_path / "c"), dims=8, corpus=str(corpus), vocab_size=5)
    meta = json.loads((distill(cfg) / "manifest.json").read_text())
    assert cfg.tokens == "auto" and meta["tokens"] == "context" and meta["context_sentences"] == len(CORPUS)
    iso = distill(DistillConfig(**{**cfg.__dict__, "out": str(tmp_path / "i"), "tokens": "isolated"}))
    assert json.loads((iso / "manifest.json").read_text())["tokens"] == "isolated"
    a = StaticModel.from_pretrained(tmp_path / "c").embedding
    b = StaticModel.from_pretrained(iso).embedding
    assert a.shape == b.shape and not np.allclose(a, b)
    with pytest.raises(ValueError, match="tokens=context needs corpus sentences"):
        distill(DistillConfig(teacher=str(model), out=str(tmp_path / "x"), dims=8, tokens="context"))
    from potstill.config import ConfigError

    with pytest.raises(ConfigError, match="tokens='word'"):
        DistillConfig(tokens="word")
