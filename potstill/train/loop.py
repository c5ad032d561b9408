"""One training round: a compiled MLX step (loss, gradients, AdamW) on the rows a batch touches,
warm-up + cosine decay, validation each epoch, early stopping that restores the best weights, a
checkpoint per epoch, and a stop with a clear error on a NaN or inf loss.

The best weights are copied when they are found (tokenlearn 0.2.1 keeps a `state_dict()` alias of
the live tensors, so its "best" weights are the last ones). A non-finite loss is caught before
its step is written back, so the model and the last checkpoint hold only finite values.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from tqdm import tqdm

from potstill.distributed import World
from potstill.train import checkpoint, losses
from potstill.train.checkpoint import RoundState, Saved
from potstill.train.config import TrainConfig
from potstill.train.data import Batch, FeatureData
from potstill.train.model import StaticTrainModel, forward, gather_rows, scatter_rows
from potstill.train.optimizer import AdamW, learning_rate, zeros_like

logger = logging.getLogger(__name__)

TargetFn = Callable[[Batch], np.ndarray]


class TrainError(ValueError):
    """Training cannot go on (a NaN or inf loss); the message says what was kept."""


@dataclass
class RoundResult:
    state: RoundState
    sentences: int  # sentences trained on in this process (resumed epochs excluded)
    seconds: float  # time spent in training steps in this process
    loop_seconds: float  # the whole loop in this process: steps, validation, checkpoints


def embed(model: StaticTrainModel, batch: Batch) -> mx.array:
    """The model's (unnormalised) embeddings of a batch's sentences."""
    return forward(model.gather(batch.rows, batch.counts.shape[1]), mx.array(batch.counts))


def validate(
    model: StaticTrainModel, batches: list[Batch], target_fn: TargetFn, loss: losses.LossFn
) -> float:
    """Mean loss over the held-out batches (weighted by batch size)."""
    total, count = 0.0, 0
    for b in batches:
        value = loss(embed(model, b), mx.array(target_fn(b)), mx.array(b.same))
        total += float(np.asarray(value)) * len(b.teacher)
        count += len(b.teacher)
    return total / max(count, 1)


def make_step(loss: losses.LossFn, optimizer: AdamW, world: World) -> Callable[..., Any]:
    """The compiled training step; `anchors` (the touched rows' starting values) may be empty when
    the optimizer has no anchor decay. With several ranks each computes its share of the batch's
    loss (scaled by its share of the batch) and the gradients are summed over the ranks, so every
    rank takes the step one process takes on the whole batch."""

    def compute(
        p: dict[str, mx.array], counts: mx.array, t: mx.array, same: mx.array, scale: mx.array
    ) -> mx.array:
        return loss(forward(p, counts), t, same) * scale

    grad = mx.value_and_grad(compute)

    def step(
        p: dict[str, mx.array],
        m: dict[str, mx.array],
        v: dict[str, mx.array],
        counts: mx.array,
        t: mx.array,
        same: mx.array,
        scale: mx.array,
        lr: mx.array,
        n: mx.array,
        anchors: dict[str, mx.array],
    ) -> tuple[mx.array, dict[str, mx.array], dict[str, mx.array], dict[str, mx.array]]:
        value, g = grad(p, counts, t, same, scale)
        if world.size > 1:
            value = mx.distributed.all_sum(value, group=world.group)
            g = {k: mx.distributed.all_sum(x, group=world.group) for k, x in g.items()}
        p2, m2, v2 = optimizer.update(p, g, m, v, lr, n, anchors)
        return value, p2, m2, v2

    return mx.compile(step)


def rank_share(world: World, batch: Batch, targets: np.ndarray) -> tuple[np.ndarray, ...]:
    """This rank's part of a batch: its sentences' counts, every target with its own sentences'
    first (the rest are its in-batch negatives), the mask to match, and its share of the batch."""
    n = len(batch.teacher)
    if world.size == 1:
        return batch.counts, targets, batch.same, np.array(1.0, np.float32)
    share = world.share(n)
    own = np.arange(share.start, share.stop)
    order = np.concatenate([own, np.setdiff1d(np.arange(n), own)])
    scale = np.array(len(own) / n, np.float32)
    return batch.counts[share], targets[order], batch.same[share][:, order], scale


def copy(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in arrays.items()}


def train_round(
    model: StaticTrainModel,
    data: FeatureData,
    val: list[Batch],
    target_fn: TargetFn,
    cfg: TrainConfig,
    folder: Path,
    config_sha256: str,
    label: str = "train",
    world: World | None = None,
) -> RoundResult:
    """Train `model` in place for up to `cfg.epochs` epochs; leaves it holding the best weights.

    With several ranks every rank walks the same batches and holds the same weights; rank 0 alone
    writes the checkpoints, which every rank resumes from (so they need the same folders)."""
    world = world or World()
    loss = losses.get(cfg.loss, cfg.temperature)
    per_epoch = max(data.steps_per_epoch(cfg.batch_size), 1)
    total = cfg.epochs * per_epoch
    start_params = copy(model.params()) if cfg.anchor_decay else {}  # where the round begins
    resumed = checkpoint.load(folder, config_sha256)
    done = None if resumed is None else (resumed.state.epochs_done, resumed.state.steps)
    world.agree(done, f"checkpoint in {folder} (epochs done, steps)")
    if resumed is not None:
        model.load(resumed.params)
        state, best, m, v = resumed.state, resumed.best, resumed.m, resumed.v
        logger.info("%s: resuming after epoch %d of %d", label, state.epochs_done, cfg.epochs)
    else:
        state = RoundState(config_sha256=config_sha256)
        best, m, v = copy(model.params()), zeros_like(model.params()), zeros_like(model.params())
        state.best_loss = validate(model, val, target_fn, loss)
        state.history.append({"epoch": 0, "val_loss": state.best_loss})
        logger.info("%s: validation loss before training %.4f", label, state.best_loss)
    step = make_step(loss, AdamW(weight_decay=cfg.weight_decay, anchor_decay=cfg.anchor_decay), world)
    params = model.params()  # the model's own arrays: steps write into them

    sentences, seconds = 0, 0.0
    loop_start = time.perf_counter()
    while state.epochs_done < cfg.epochs and not state.stopped_early:
        epoch = state.epochs_done + 1
        bar = tqdm(
            total=per_epoch,
            desc=f"{label} epoch {epoch}/{cfg.epochs}",
            unit="step",
            leave=False,
            disable=not world.leader,
        )
        start = time.perf_counter()
        running, n_sent = 0.0, 0
        for n_steps, batch in enumerate(data.batches(cfg.batch_size, cfg.seed, epoch, cfg.neighbour_block)):
            padded = batch.counts.shape[1]
            lr = learning_rate(state.steps, total, cfg.lr, cfg.warmup)
            counts, targets, same, scale = rank_share(world, batch, target_fn(batch))
            value, p2, m2, v2 = step(
                gather_rows(params, batch.rows, padded),
                gather_rows(m, batch.rows, padded),
                gather_rows(v, batch.rows, padded),
                mx.array(counts),
                mx.array(targets),
                mx.array(same),
                mx.array(scale),
                mx.array(lr, dtype=mx.float32),
                mx.array(state.steps + 1, dtype=mx.float32),
                gather_rows(start_params, batch.rows, padded) if start_params else {},
            )
            current = float(np.asarray(value))
            if not math.isfinite(current):
                bar.close()
                kept = (
                    f"the last good checkpoint (after epoch {state.epochs_done}) is kept in "
                    f"{folder / checkpoint.NAME}; rerun to resume from it"
                    if state.epochs_done
                    else "no epoch had completed, so no checkpoint was written"
                )
                raise TrainError(
                    f"{label}: the loss became {current} at epoch {epoch} step {n_steps + 1}; {kept}. "
                    f"A lower lr (now {cfg.lr}) usually avoids this."
                )
            scatter_rows(params, p2, batch.rows)
            scatter_rows(m, m2, batch.rows)
            scatter_rows(v, v2, batch.rows)
            running = current if n_steps == 0 else 0.98 * running + 0.02 * current
            n_sent += len(batch.teacher)
            state.steps += 1
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{running:.4f}", sent_s=f"{n_sent / max(elapsed, 1e-9):.0f}")
            bar.update(1)
        bar.close()
        train_seconds = time.perf_counter() - start
        sentences += n_sent
        seconds += train_seconds
        val_loss = validate(model, val, target_fn, loss)
        state.epochs_done = epoch
        speed = n_sent / max(train_seconds, 1e-9)
        state.history.append(
            {"epoch": epoch, "train_loss": running, "val_loss": val_loss, "sentences_per_s": speed}
        )
        if val_loss < state.best_loss:
            state.best_loss, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
            best = copy(params)
        else:
            state.bad_epochs += 1
            if cfg.patience and state.bad_epochs >= cfg.patience:
                state.stopped_early = True
        (logger.info if world.leader else logger.debug)(
            "%s epoch %d: train loss %.4f, val loss %.4f (best %.4f at epoch %d), %.0f sentences/s",
            label, epoch, running, val_loss, state.best_loss, state.best_epoch, speed,
        )  # fmt: skip
        if world.leader:
            checkpoint.save(folder, Saved(state, params, best, m, v))
    model.load(best)
    return RoundResult(state, sentences, seconds, time.perf_counter() - loop_start)
