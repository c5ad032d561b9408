"""AdamW with lazy row updates: a step updates the moments and values of the rows its batch
touched (and the dense head); untouched rows keep theirs (TensorFlow's LazyAdam). Bias correction
uses the global step. The moments live in numpy beside the parameters, one row per token.

`anchor_decay` is weight decay toward the round's starting values instead of toward zero (L2-SP):
a step moves each parameter it touches a share lr * anchor_decay of the way back to where the
round began, so rows keep what the distilled base knew unless the loss keeps pulling them away."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np


@dataclass(frozen=True)
class AdamW:
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    anchor_decay: float = 0.0

    def update(
        self,
        params: dict[str, mx.array],
        grads: dict[str, mx.array],
        m: dict[str, mx.array],
        v: dict[str, mx.array],
        lr: mx.array,
        step: mx.array,
        anchors: dict[str, mx.array],
    ) -> tuple[dict[str, mx.array], dict[str, mx.array], dict[str, mx.array]]:
        """One AdamW step (pure: returns new parameters and moments); `step` counts from 1.
        `anchors`: the starting values that `anchor_decay` pulls toward (may be empty when it is 0)."""
        new_p, new_m, new_v = {}, {}, {}
        c1 = 1.0 - self.beta1**step
        c2 = 1.0 - self.beta2**step
        for name, p in params.items():
            g = grads[name]
            mm = self.beta1 * m[name] + (1.0 - self.beta1) * g
            vv = self.beta2 * v[name] + (1.0 - self.beta2) * g * g
            update = (mm / c1) / (mx.sqrt(vv / c2) + self.eps)
            new = p * (1.0 - lr * self.weight_decay) - lr * update
            if self.anchor_decay:  # a missing anchor fails here rather than silently not pulling
                new = new - lr * self.anchor_decay * (p - anchors[name])
            new_p[name] = new
            new_m[name], new_v[name] = mm, vv
        return new_p, new_m, new_v


def zeros_like(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.zeros_like(value) for name, value in params.items()}


def learning_rate(step: int, total: int, peak: float, warmup: float) -> float:
    """Linear warm-up from 1% to `peak` over `warmup` of the steps, then cosine decay to 1%."""
    warm = int(total * warmup)
    floor = 0.01 * peak
    if step < warm:
        return floor + (peak - floor) * step / warm
    progress = min((step - warm) / max(total - warm, 1), 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + float(np.cos(np.pi * progress)))
