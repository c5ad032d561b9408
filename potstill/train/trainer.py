"""The `train` stage: distilled base + featurized store -> `round1/` and `final/` model folders.

    OUT/targets_pca.safetensors   the target PCA (fitted on the training split)
    OUT/round1/                   model2vec folder: trained against the teacher's embeddings
    OUT/round2/ ... roundN/       model2vec folders: born-again rounds before the last (with
                                  born_again_rounds > 1), each on the previous round's embeddings
    OUT/final/                    model2vec folder: the last born-again round (or round 1 without)
    OUT/manifest.json             config, inputs, every round's history, speed, peak memory

A round whose folder has a manifest made with the same settings and inputs is not trained again;
a round that was interrupted resumes from its last epoch's checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from model2vec import StaticModel
from tokenizers import Tokenizer

from potstill import distributed, manifest
from potstill.config import ConfigError, to_dict
from potstill.features import store
from potstill.train import checkpoint
from potstill.train.born_again import born_again_targets, teacher_targets
from potstill.train.config import TrainConfig
from potstill.train.data import FeatureData, Tokenize, fixed_batches
from potstill.train.loop import RoundResult, TargetFn, train_round
from potstill.train.model import StaticTrainModel, fit_head, pool
from potstill.train.targets import fit_target_pca, save_pca

logger = logging.getLogger(__name__)

HEAD_FIT_BATCHES = 40  # training batches used for the least-squares head at the start of a round


def load_base(folder: Path) -> tuple[np.ndarray, Tokenizer, dict[str, Any]]:
    """The base model's table (with any `weights`/`mapping` folded in), tokenizer and config."""
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} is not a model2vec folder (no model.safetensors); pass --base")
    model = StaticModel.from_pretrained(folder)
    table = np.asarray(model.embedding, dtype=np.float32)
    if model.token_mapping is not None:
        table = table[np.asarray(model.token_mapping)]
    if model.weights is not None:
        table = table * np.asarray(model.weights, dtype=np.float32)[:, None]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return table, tokenizer, config


def check_teacher(base: Path, data: FeatureData) -> dict[str, Any]:
    """The base's teacher, refusing a store featurized by another teacher."""
    info = manifest.read(base) if manifest.manifest_path(base).is_file() else {}
    teacher = info.get("teacher", {})
    ours = teacher.get("weights_sha256")
    theirs = data.identity.get("teacher_weights_sha256")
    if ours and theirs and ours != theirs:
        raise store.StoreError(
            f"{data.folder} was featurized with another teacher ({theirs[:12]}...) than the base "
            f"{base} was distilled from ({ours[:12]}...); featurize with the base's teacher"
        )
    return dict(teacher)


def born_again_names(rounds: int) -> list[str]:
    """The born-again rounds' folders in training order: round2/ ... and, last, final/."""
    return [f"round{k}" for k in range(2, rounds + 1)] + ["final"]


def round_hash(cfg: TrainConfig, inputs: list[manifest.Input], round_name: str) -> str:
    """What a round's result depends on: its settings and its inputs' manifests. Only final/
    depends on how many born-again rounds follow round 1, so adding rounds reuses the earlier ones."""
    settings = to_dict(cfg)
    settings.pop("out")
    if round_name != "final":
        settings.pop("born_again_rounds")
    if round_name == "round1":
        for key in ("born_again", "alpha"):
            settings.pop(key)
    payload = {"round": round_name, "config": settings, "inputs": [dataclasses.asdict(i) for i in inputs]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def save_model(
    folder: Path, table: np.ndarray, tokenizer: Tokenizer, base_config: dict[str, Any], info: dict[str, Any]
) -> None:
    config = {k: v for k, v in base_config.items() if k not in ("normalize", "max_length")}
    config["potstill"] = {**base_config.get("potstill", {}), **info}
    model = StaticModel(
        vectors=table.astype(np.float32),
        tokenizer=tokenizer,
        config=config,
        normalize=True,
        base_model_name=base_config.get("tokenizer_name"),
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)


def finished(folder: Path, sha: str) -> bool:
    try:
        info = manifest.read(folder)
    except manifest.ManifestError:
        return False
    return info.get("round_sha256") == sha and not manifest.verify(folder)


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_round(
    name: str,
    cfg: TrainConfig,
    out: Path,
    base: tuple[np.ndarray, Tokenizer, dict[str, Any]],
    data: FeatureData,
    target_fn: TargetFn,
    val_texts: list[str],
    val_emb: np.ndarray,
    inputs: list[manifest.Input],
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train (or resume, or reuse) one round; returns its folded table and summary."""
    folder = out / name
    sha = round_hash(cfg, inputs, name)
    world = distributed.world()
    is_done = finished(folder, sha)
    world.agree(is_done, f"view of {folder} (finished or not)")
    if is_done:
        logger.info("%s: already trained with these settings; reusing %s", name, folder)
        table, _, _ = load_base(folder)
        return table, manifest.read(folder)["training"]
    table, tokenizer, base_config = base
    tokenize = Tokenize(tokenizer, cfg.max_tokens)
    val = fixed_batches(tokenize, val_texts, val_emb, cfg.batch_size)
    if not val:
        raise ValueError(f"{data.folder}: too few held-out sentences to validate; featurize more text")
    model = StaticTrainModel.from_table(table)
    pooled, targets = [], []
    for k, b in enumerate(data.batches(cfg.batch_size, cfg.seed, 0, cfg.neighbour_block)):
        if k == HEAD_FIT_BATCHES:
            break
        pooled.append(np.array(pool(model.gather(b.rows, b.counts.shape[1]), mx.array(b.counts))))
        targets.append(target_fn(b))
    if not pooled:
        raise ValueError(
            f"{data.folder}: fewer training sentences than one batch ({cfg.batch_size}); "
            "featurize more text or lower batch_size"
        )
    w, bias = fit_head(np.concatenate(pooled), np.concatenate(targets))
    model.head_weight, model.head_bias = w, bias
    start = model.fold() if cfg.base_blend else None
    folder.mkdir(parents=True, exist_ok=True)
    result: RoundResult = train_round(model, data, val, target_fn, cfg, folder, sha, label=name, world=world)
    trained = model.fold()
    if start is not None:  # WiSE-FT: mean pooling is linear, so this blends the embeddings too
        trained = ((1.0 - cfg.base_blend) * trained + cfg.base_blend * start).astype(np.float32)
    summary = {
        "round": name,
        "epochs_done": result.state.epochs_done,
        "steps": result.state.steps,
        "best_epoch": result.state.best_epoch,
        "best_val_loss": result.state.best_loss,
        "stopped_early": result.state.stopped_early,
        "history": result.state.history,
        "sentences_per_s": result.sentences / result.seconds if result.seconds else None,
        "loop_sentences_per_s": result.sentences / result.loop_seconds if result.loop_seconds else None,
        "train_seconds": round(result.seconds, 1),
        "loop_seconds": round(result.loop_seconds, 1),
    }
    if world.size > 1:
        summary["ranks"] = world.size
    if world.leader:
        info = {"stage": "train", "round": name, "loss": cfg.loss}
        save_model(folder, trained, tokenizer, base_config, info)
        checkpoint.remove(folder)
        files = [p for p in folder.iterdir() if p.is_file() and p.name != manifest.MANIFEST]
        extra = {"round_sha256": sha, "training": summary}
        manifest.write(folder, "train", to_dict(cfg), sha, inputs, files, extra=extra)
    world.barrier()  # the round's folder is complete before any rank goes on
    return trained, summary


def train(cfg: TrainConfig) -> Path:
    """Run the stage; returns the `final/` model folder."""
    if not cfg.out or not cfg.base or not cfg.features:
        raise ValueError("train needs --base DIR, --features DIR and --out DIR")
    start = time.perf_counter()
    world = distributed.world()
    if cfg.batch_size < world.size:
        raise ConfigError(f"batch_size={cfg.batch_size} is below the {world.size} ranks sharing each batch")
    out = Path(cfg.out)
    base_dir = Path(cfg.base)
    base = load_base(base_dir)
    table, tokenizer, _ = base
    data = FeatureData(
        cfg.features, Tokenize(tokenizer, cfg.max_tokens), cfg.val_fraction, cfg.val_max, cfg.max_sentences
    )
    teacher = check_teacher(base_dir, data)
    inputs = [manifest.Input.of(base_dir), manifest.Input.of(cfg.features)]
    world.agree([i.manifest_sha256 for i in inputs], "base model or features (their manifests)")
    out.mkdir(parents=True, exist_ok=True)
    val_texts, val_emb = data.validation()
    pca = fit_target_pca((e for _, e in data.training_chunks()), table.shape[1])
    if world.leader:
        save_pca(pca, out / "targets_pca.safetensors")
    logger.info(
        "train: %d training sentences, %d held out; target PCA keeps %.1f%% of the variance",
        data.train_size(),
        len(val_texts),
        100 * float(pca.explained_variance_ratio.sum()),
    )
    args = (data, teacher_targets(pca), val_texts, val_emb, inputs)
    previous, summary1 = run_round("round1", cfg, out, base, *args)
    rounds = [summary1]
    final = out / "final"
    if cfg.born_again:
        for name in born_again_names(cfg.born_again_rounds):
            target_fn = born_again_targets(pca, previous, cfg.alpha)
            previous, summary = run_round(name, cfg, out, base, data, target_fn, val_texts, val_emb, inputs)
            rounds.append(summary)
    elif world.leader:
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(out / "round1", final)
    if world.leader:
        files = [out / "targets_pca.safetensors"]
        manifest.write(
            out,
            "train",
            to_dict(cfg),
            round_hash(cfg, inputs, "final"),
            inputs,
            files,
            extra={
                "teacher": teacher,
                "rows": int(table.shape[0]),
                "dims": int(table.shape[1]),
                "train_sentences": data.train_size(),
                "held_out_sentences": len(val_texts),
                "rounds": rounds,
                "seconds": round(time.perf_counter() - start, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            },
        )
    world.barrier()  # the stage's manifest is written before any rank goes on
    return final
