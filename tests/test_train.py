"""Train: losses on hand-checked batches, the folded table, best-weight restore, NaN stop, resume
after SIGKILL, born-again round, and bad input, on a tiny random BERT and a tiny corpus."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import _WORDS, REPO_ROOT, make_bert, sigkill_when_exists
from model2vec import StaticModel
from safetensors.numpy import load_file

from potstill.config import ConfigError
from potstill.distill.build import distill
from potstill.distill.config import DistillConfig
from potstill.features import store
from potstill.features.config import FeaturizeConfig
from potstill.features.featurize import featurize
from potstill.train import checkpoint, losses
from potstill.train.born_again import teacher_targets
from potstill.train.config import TrainConfig
from potstill.train.data import Batch, FeatureData, Tokenize, block_order, fixed_batches
from potstill.train.loop import TrainError, embed, train_round, validate
from potstill.train.model import StaticTrainModel, fit_head
from potstill.train.optimizer import AdamW
from potstill.train.targets import fit_target_pca
from potstill.train.trainer import load_base, train


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(_WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]
    lines += lines[:20]  # duplicates: featurize dedupes them
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    bert = make_bert(root / "bert")
    corpus = write_corpus(root / "corpus.txt", 1200)
    feats = root / "features"
    featurize(FeaturizeConfig(teacher=str(bert), corpus=str(corpus), out=str(feats), shard_size=300))
    base = distill(DistillConfig(teacher=str(bert), out=str(root / "base"), dims=8))
    return {"root": root, "bert": bert, "corpus": corpus, "features": feats, "base": base}


def cfg(setup: dict[str, Path], out: Path, **kw: object) -> TrainConfig:
    values: dict[str, object] = {
        "base": str(setup["base"]),
        "features": str(setup["features"]),
        "out": str(out),
        "batch_size": 32,
        "epochs": 2,
        "val_fraction": 0.1,
    }
    values.update(kw)
    return TrainConfig(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ losses
def test_losses_on_hand_checked_batches() -> None:
    pred = mx.array([[1.0, 0.0], [0.0, 2.0]])
    target = mx.array([[3.0, 0.0], [1.0, 1.0]])
    none = mx.zeros((2, 2))
    # cosines: row 0 vs targets (1, 1/sqrt2), row 1 vs targets (0, 1/sqrt2)
    c = 1 / math.sqrt(2)
    t = 0.5
    expected = 0.5 * (
        -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(c / t)))
        - math.log(math.exp(c / t) / (math.exp(0 / t) + math.exp(c / t)))
    )
    assert float(losses.contrastive(pred, target, none, t)) == pytest.approx(expected, rel=1e-5)
    # rows 0 and 1 hold the same text: nothing is left to contrast, the loss is 0
    same = mx.array([[0.0, 1.0], [1.0, 0.0]])
    assert float(losses.contrastive(pred, target, same, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.cosine(pred, target)) == pytest.approx(((1 - 1) + (1 - c)) / 2, rel=1e-5)
    assert float(losses.mse(pred, target)) == pytest.approx((4 + 0 + 1 + 1) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="not known"):
        losses.get("hinge", 0.05)


# -------------------------------------------------------------------------------------- the model
def test_head_fit_recovers_a_linear_map_and_stays_small_on_a_rank_deficient_base() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8))
    true_w, true_b = rng.normal(size=(4, 8)), rng.normal(size=4)
    w, b = fit_head(x, x @ true_w.T + true_b)
    np.testing.assert_allclose(w, true_w, atol=0.02)
    np.testing.assert_allclose(b, true_b, atol=0.02)
    # a base that spans 6 of its 8 directions (a table at the teacher's full width), plus float noise
    basis = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    flat = rng.normal(size=(2000, 6)) @ basis[:, :6].T + 1e-7 * rng.normal(size=(2000, 8))
    w, _ = fit_head(flat, rng.normal(size=(2000, 4)))
    assert np.abs(w @ basis[:, 6:]).max() < 1e-3  # no weight on the directions the base lacks
    assert np.isfinite(w).all() and np.abs(w).max() < 1.0


def test_folded_table_alone_reproduces_the_model(setup: dict[str, Path]) -> None:
    table, tokenizer, _ = load_base(setup["base"])
    model = StaticTrainModel.from_table(table)
    rng = np.random.default_rng(1)
    dims = table.shape[1]
    model.head_weight = rng.normal(size=(dims, dims)).astype(np.float32)
    model.head_bias = rng.normal(size=dims).astype(np.float32)
    model.weights = model.weights * rng.uniform(0.5, 2.0, size=table.shape[0]).astype(np.float32)
    folded = model.fold()
    static = StaticModel(vectors=folded, tokenizer=tokenizer, normalize=True)
    texts = ["the cat sat on the mat the cat", "a lazy dog", "hello world and the quick brown fox"]
    tok = Tokenize(tokenizer, 512)
    batch = fixed_batches(tok, texts, np.zeros((3, 4), np.float32), 8)[0]
    assert batch.counts[0].sum() == len(tok(texts[:1])[0])  # repeated tokens are counted
    ours = np.array(embed(model, batch))
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    np.testing.assert_allclose(static.encode(texts), ours, atol=1e-5)
    # the initial model (identity head) is the base table itself
    np.testing.assert_allclose(StaticTrainModel.from_table(table).fold(), table, atol=1e-5)


def test_split_is_stable_and_held_out_never_trained(setup: dict[str, Path]) -> None:
    _, tokenizer, _ = load_base(setup["base"])
    data = FeatureData(setup["features"], Tokenize(tokenizer, 512), 0.1, 10_000)
    held, _ = data.validation()
    assert 60 <= len(held) <= 190  # ~10% of 1,200
    seen: set[bytes] = set()
    for b in data.batches(32, seed=0, epoch=1):
        assert b.counts.shape[0] == 32 and b.counts.shape[1] % 512 == 0
        assert b.counts[:, len(b.rows) :].sum() == 0 and (b.counts.sum(axis=1) > 0).all()
        seen.update(row.tobytes() for row in b.teacher)
    _, held_emb = data.validation()
    assert not seen & {row.tobytes() for row in held_emb}
    first = [b.teacher[0].tobytes() for b in data.batches(32, seed=0, epoch=1)]
    again = [b.teacher[0].tobytes() for b in data.batches(32, seed=0, epoch=1)]
    other = [b.teacher[0].tobytes() for b in data.batches(32, seed=0, epoch=2)]
    assert first == again and first != other
    # neighbour blocks: as many training sentences, none held out, in another order
    plain = [t.tobytes() for b in data.batches(32, seed=0, epoch=1) for t in b.teacher]
    blocked = [t.tobytes() for b in data.batches(32, seed=0, epoch=1, block=4) for t in b.teacher]
    assert len(plain) == len(blocked) and plain != blocked
    assert not set(blocked) & {row.tobytes() for row in held_emb}


def test_block_order_keeps_runs_together() -> None:
    order = block_order(np.random.default_rng(0), 10, 4).tolist()
    # a concatenation of the runs [0..3], [4..7] and [8, 9], in some order
    runs, k = [], 0
    while k < len(order):
        size = 2 if order[k] == 8 else 4
        runs.append(tuple(order[k : k + size]))
        k += size
    assert sorted(runs) == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]
    assert block_order(np.random.default_rng(0), 0, 4).size == 0
    same = np.random.default_rng(3).permutation(7)
    np.testing.assert_array_equal(block_order(np.random.default_rng(3), 7, 1), same)


# ---------------------------------------------------------------------------------------- the loop
def _round_parts(setup: dict[str, Path], c: TrainConfig) -> tuple[StaticTrainModel, FeatureData, list[Batch]]:
    table, tokenizer, _ = load_base(setup["base"])
    tok = Tokenize(tokenizer, 512)
    data = FeatureData(setup["features"], tok, c.val_fraction, c.val_max)
    texts, emb = data.validation()
    return StaticTrainModel.from_table(table), data, fixed_batches(tok, texts, emb, c.batch_size)


def _validation_rows(val: list[Batch]) -> set[bytes]:
    """The held-out sentences' teacher rows: a batch is a validation batch when its rows are these
    (the split is by text hash and featurize dedupes, so no training row is among them)."""
    return {row.tobytes() for v in val for row in v.teacher}


def test_early_stopping_restores_the_best_weights(setup: dict[str, Path], tmp_path: Path) -> None:
    c = cfg(setup, tmp_path, epochs=4, patience=0, loss="cosine", lr=0.05)
    model, data, val = _round_parts(setup, c)
    pca = fit_target_pca((e for _, e in data.training_chunks()), 8)
    good = teacher_targets(pca)
    held_out = _validation_rows(val)
    per_epoch = data.steps_per_epoch(c.batch_size)
    calls = {"train": 0}

    def targets(b: Batch) -> np.ndarray:
        # validation always sees the real targets; after epoch 1 training chases the opposite ones
        if b.teacher[0].tobytes() in held_out:
            return good(b)
        calls["train"] += 1
        return good(b) if calls["train"] <= per_epoch else -good(b)

    result = train_round(model, data, val, targets, c, tmp_path, "x")
    history = result.state.history
    assert calls["train"] == 4 * per_epoch  # every epoch ran: patience 0 never stops early
    assert result.state.best_epoch == 1
    assert history[-1]["val_loss"] > history[1]["val_loss"]
    loss = losses.get("cosine", c.temperature)
    assert validate(model, val, good, loss) == pytest.approx(history[1]["val_loss"], rel=1e-5)


def test_anchor_decay_pulls_toward_the_starting_values(setup: dict[str, Path], tmp_path: Path) -> None:
    # one hand-checked step: a zero gradient leaves only the pull, lr * decay of the way back
    p, zero = {"x": mx.array([1.0, -2.0])}, {"x": mx.array([0.0, 0.0])}
    new, _, _ = AdamW(anchor_decay=2.0).update(
        p, zero, zero, zero, mx.array(0.1), mx.array(1.0), {"x": zero["x"]}
    )
    np.testing.assert_allclose(np.asarray(new["x"]), [0.8, -1.6], rtol=1e-6)
    # in a round: the stronger the pull, the closer the trained rows stay to the base
    moved = []
    for decay in (0.0, 50.0):
        c = cfg(setup, tmp_path / str(decay), epochs=2, anchor_decay=decay, lr=0.05)
        model, data, val = _round_parts(setup, c)
        start = model.embeddings.copy()
        pca = fit_target_pca((e for _, e in data.training_chunks()), 8)
        train_round(model, data, val, teacher_targets(pca), c, tmp_path / str(decay), "x")
        moved.append(float(np.abs(model.embeddings - start).sum()))
    assert 0 < moved[1] < 0.5 * moved[0]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(setup: dict[str, Path], tmp_path: Path) -> None:
    c = cfg(setup, tmp_path, epochs=3, patience=0)
    model, data, val = _round_parts(setup, c)
    pca = fit_target_pca((e for _, e in data.training_chunks()), 8)
    good = teacher_targets(pca)
    calls = {"n": 0}
    per_epoch = data.steps_per_epoch(c.batch_size)
    held_out = _validation_rows(val)

    def targets(b: Batch) -> np.ndarray:
        if b.teacher[0].tobytes() in held_out:
            return good(b)
        calls["n"] += 1
        out = good(b)
        return out * np.nan if calls["n"] > per_epoch + 3 else out  # NaN in epoch 2

    with pytest.raises(TrainError, match=r"loss became nan at epoch 2 .*after epoch 1\) is kept"):
        train_round(model, data, val, targets, c, tmp_path, "x")
    state = json.loads((tmp_path / checkpoint.NAME / "state.json").read_text())
    assert state["epochs_done"] == 1
    saved = load_file(str(tmp_path / checkpoint.NAME / "model.safetensors"))
    assert all(np.isfinite(v).all() for v in saved.values())


# ---------------------------------------------------------------------------------------- the stage
def test_train_stage_round1_and_born_again(setup: dict[str, Path], tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    res = run_cli(
        "train",
        "--base", setup["base"], "--features", setup["features"], "--out", out,
        "--batch-size", "32", "--epochs", "3", "--val-fraction", "0.1", "--born-again",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    info = json.loads((out / "manifest.json").read_text())
    assert info["stage"] == "train" and [r["round"] for r in info["rounds"]] == ["round1", "final"]
    r1 = info["rounds"][0]
    assert r1["best_val_loss"] < r1["history"][0]["val_loss"]  # training lowered the held-out loss
    assert info["peak_rss_mb"] > 0 and r1["sentences_per_s"] > 0
    assert (out / "targets_pca.safetensors").is_file()
    a = StaticModel.from_pretrained(out / "round1")
    b = StaticModel.from_pretrained(out / "final")
    base = StaticModel.from_pretrained(setup["base"])
    assert a.embedding.shape == b.embedding.shape == base.embedding.shape
    assert not np.allclose(a.embedding, b.embedding)
    for d in ("round1", "final"):
        assert json.loads((out / d / "manifest.json").read_text())["stage"] == "train"
        assert not (out / d / checkpoint.NAME).exists()
    # a rerun with the same settings reuses both rounds
    again = run_cli("train", "--base", setup["base"], "--features", setup["features"], "--out", out,
                    "--batch-size", "32", "--epochs", "3", "--val-fraction", "0.1", "--born-again")  # fmt: skip
    assert again.returncode == 0 and "already trained" in again.stderr
    np.testing.assert_array_equal(StaticModel.from_pretrained(out / "final").embedding, b.embedding)
    # a second born-again round: round1 is reused; round2 is the former final (the same settings,
    # targets and seed: training is deterministic), and the new final learns round2's embeddings
    more = run_cli("train", "--base", setup["base"], "--features", setup["features"], "--out", out,
                   "--batch-size", "32", "--epochs", "3", "--val-fraction", "0.1", "--born-again",
                   "--born-again-rounds", "2")  # fmt: skip
    assert more.returncode == 0, more.stderr
    assert "round1: already trained" in more.stderr and "round2: validation loss before" in more.stderr
    info = json.loads((out / "manifest.json").read_text())
    assert [r["round"] for r in info["rounds"]] == ["round1", "round2", "final"]
    r2 = StaticModel.from_pretrained(out / "round2").embedding
    np.testing.assert_allclose(r2, b.embedding, atol=1e-6)
    assert not np.allclose(StaticModel.from_pretrained(out / "final").embedding, r2)


def test_base_blend_saves_the_trained_model_mixed_with_its_start(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    # round 1 only: the blend does not change training, so at B the saved table must be
    # (1 - B) x the B = 0 table + B x the round's start, and that start is the base through an
    # affine head (one linear map for every row)
    tables = {}
    for blend in (0.0, 0.25, 0.5):
        train(cfg(setup, tmp_path / str(blend), base_blend=blend))
        folder = tmp_path / str(blend) / "final"
        tables[blend] = StaticModel.from_pretrained(folder).embedding.astype(np.float64)
    starts = [(tables[b] - (1 - b) * tables[0.0]) / b for b in (0.25, 0.5)]
    np.testing.assert_allclose(starts[0], starts[1], atol=1e-4)
    assert not np.allclose(tables[0.25], tables[0.0], atol=1e-3)
    base = StaticModel.from_pretrained(setup["base"]).embedding.astype(np.float64)
    x = np.hstack([base, np.ones((len(base), 1))])
    coef, *_ = np.linalg.lstsq(x, starts[1], rcond=None)
    assert np.abs(x @ coef - starts[1]).max() < 1e-3 * np.abs(starts[1]).max()
    # the trained table itself is no affine image of the base
    coef0, *_ = np.linalg.lstsq(x, tables[0.0], rcond=None)
    assert np.abs(x @ coef0 - tables[0.0]).max() > 1e-2 * np.abs(tables[0.0]).max()
    with pytest.raises(ConfigError, match="base_blend"):
        cfg(setup, tmp_path / "bad", base_blend=1.0)


def test_sigkill_then_rerun_equals_uninterrupted(setup: dict[str, Path], tmp_path: Path) -> None:
    def args(out: Path) -> list[str]:
        return [
            sys.executable, "-m", "potstill.cli", "train", "--base", str(setup["base"]),
            "--features", str(setup["features"]), "--out", str(out), "--batch-size", "16",
            "--epochs", "12", "--patience", "0", "--val-fraction", "0.1",
        ]  # fmt: skip

    ref = subprocess.run(args(tmp_path / "ref"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    killed = tmp_path / "killed"
    sigkill_when_exists(args(killed)[3:], killed / "round1" / checkpoint.NAME / "state.json")
    assert not (killed / "round1" / "manifest.json").exists()
    res = subprocess.run(args(killed), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming after epoch" in res.stderr
    np.testing.assert_allclose(
        StaticModel.from_pretrained(killed / "final").embedding,
        StaticModel.from_pretrained(tmp_path / "ref" / "final").embedding,
        atol=1e-6,
    )


def test_bad_input_gets_clear_errors(setup: dict[str, Path], tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    other = make_bert(tmp_path / "other", seed=7)
    feats = tmp_path / "other-features"
    featurize(
        FeaturizeConfig(teacher=str(other), corpus=str(setup["corpus"]), out=str(feats), shard_size=300)
    )
    with pytest.raises(store.StoreError, match="another teacher"):
        train(cfg(setup, tmp_path / "a", features=str(feats)))
    with pytest.raises(FileNotFoundError, match="not a model2vec folder"):
        train(cfg(setup, tmp_path / "b", base=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="fewer training sentences than one batch"):
        train(cfg(setup, tmp_path / "c", batch_size=4096))
    with pytest.raises(ConfigError, match="loss"):
        cfg(setup, tmp_path, loss="hinge")
    res = run_cli("train", "--base", setup["base"], "--features", setup["base"], "--out", tmp_path / "d")
    assert res.returncode == 2 and "not features" in res.stderr
