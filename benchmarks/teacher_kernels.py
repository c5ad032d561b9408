"""Teacher kernels on one CPU core: what MLX's CPU JIT does with element-wise graphs, potstill's
kernels against the ones they replaced, and the matmul output's alignment.

Every row is a ratio to its anchor, timed in the same process (best of `--repeats`):
- a fused ten-op polynomial, anchor; the same behind `clip` and behind an `abs` clamp;
- GELU and softmax: the previous kernels (a clipped Horner erf, a `maximum`-floored exp; kept
  here as the anchor) against `potstill.teacher.kernels`;
- float32 sgemm 1280x384 @ 384x1536 on one BLAS thread: torch (its own MKL) into an aligned
  output, anchor; torch into an output 8 bytes off (as MLX's allocator places every buffer);
  MLX on the BLAS potstill loaded.

    python benchmarks/teacher_kernels.py            # ~1 minute
Needs torch for the alignment rows (`pip install -e ".[eval]" torch==2.13.0`); they are skipped
without it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

# isort: off
import potstill  # noqa: F401  (first: it loads the fast BLAS before mlx.core)
import mlx.core as mx
from common import report
from potstill.teacher import kernels
from potstill.teacher.backend import blas_state, blas_threads

# isort: on

ROOT = Path(__file__).resolve().parent.parent


def best_ms(fn: Callable[[], object], repeats: int, n: int = 10) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e3


def mlx_ms(fn: Callable[[mx.array], mx.array], x: mx.array, repeats: int) -> float:
    return best_ms(lambda: mx.eval(fn(x)), repeats)


def _poly(x: mx.array) -> mx.array:
    t = x * x
    return x * (t * 0.1 + 0.2) / (t * 0.3 + 1.0)


def _old_gelu(x: mx.array) -> mx.array:
    """The GELU potstill ran before: erf by the same rational, clipped, in Horner form."""
    y = mx.clip(x * 0.7071067811865476, -4.0, 4.0)
    t = y * y
    p = t * kernels._ERF_NUM[0] + kernels._ERF_NUM[1]
    for c in kernels._ERF_NUM[2:]:
        p = p * t + c
    q = t * kernels._ERF_DEN[0] + kernels._ERF_DEN[1]
    for c in kernels._ERF_DEN[2:]:
        q = q * t + c
    return 0.5 * x * (1.0 + y * p / q)


def _old_exp(x: mx.array) -> mx.array:
    z = mx.maximum(x, -87.0) * (1.0 / 128)
    p = 1.0 + z * (1.0 + z * (1 / 2 + z * (1 / 6 + z * (1 / 24 + z * (1 / 120 + z * (1 / 720))))))
    for _ in range(7):
        p = p * p
    return p


old_gelu, old_exp = mx.compile(_old_gelu), mx.compile(_old_exp)


def old_softmax(s: mx.array) -> mx.array:
    z = old_exp(s - mx.max(s, axis=-1, keepdims=True))
    return z * mx.reciprocal(mx.sum(z, axis=-1, keepdims=True))


def sgemm_rows(repeats: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    try:
        import torch
    except ImportError:
        return rows
    torch.set_num_threads(1)

    def placed(shape: tuple[int, int], offset: int) -> torch.Tensor:
        buf = torch.empty(shape[0] * shape[1] + 16)
        return buf[offset : offset + shape[0] * shape[1]].view(*shape).normal_()

    a, w = placed((1280, 384), 0), placed((1536, 384), 0)
    aligned, off = placed((1280, 1536), 0), placed((1280, 1536), 2)
    assert aligned.data_ptr() % 64 == 0 and off.data_ptr() % 16 == 8
    rows.append(("torch sgemm, aligned output", best_ms(lambda: torch.matmul(a, w.T, out=aligned), repeats)))
    rows.append(("torch sgemm, output 8 bytes off", best_ms(lambda: torch.matmul(a, w.T, out=off), repeats)))
    xa, xw = mx.random.normal((1280, 384)), mx.random.normal((1536, 384))
    mx.eval(xa, xw)
    with blas_threads(1):
        ms = best_ms(lambda: mx.eval(xa @ xw.T), repeats)
    rows.append((f"MLX sgemm on {Path(blas_state().library or 'bundled').name}", ms))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/teacher_kernels.json")
    args = ap.parse_args()
    r = args.repeats
    x = mx.random.normal((1280, 1536)) * 3  # an MPNet-sized intermediate activation of 40-token batch 32
    scores = mx.random.normal((32, 12, 40, 48)) * 4
    mx.eval(x, scores)
    groups: list[list[tuple[str, float]]] = [
        [
            ("fused polynomial (anchor)", mlx_ms(mx.compile(_poly), x, r)),
            ("same behind clip", mlx_ms(mx.compile(lambda a: _poly(mx.clip(a, -4.0, 4.0))), x, r)),
            ("same behind abs clamp", mlx_ms(mx.compile(lambda a: _poly(kernels.clamp(a, 4.0))), x, r)),
        ],
        [
            ("GELU, previous (anchor)", mlx_ms(old_gelu, x, r)),
            ("GELU, kernels.gelu_erf", mlx_ms(kernels.gelu_erf, x, r)),
        ],
        [
            ("softmax, previous (anchor)", mlx_ms(old_softmax, scores, r)),
            ("softmax, kernels.softmax", mlx_ms(kernels.softmax, scores, r)),
        ],
    ]
    sgemm = sgemm_rows(r)
    if sgemm:
        groups.append(sgemm)
    lines = ["| row | ms (best) | vs its group's first row |", "|---|---|---|"]
    payload: dict[str, float] = {}
    for group in groups:
        anchor = group[0][1]
        for name, ms in group:
            lines.append(f"| {name} | {ms:.2f} | {ms / anchor:.2f}x |")
            payload[name] = ms
    report(lines, args.out, {"ms": payload, "blas": blas_state().library})


if __name__ == "__main__":
    main()
