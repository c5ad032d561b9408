"""Data-parallel train: one process against `mlx.launch -n N potstill train`, one run.

Both train the same base on the same store with the same recipe settings (so the same global
batch); the script reports each command's wall time and, per round, how far the N-rank table is
from the one-process table (max and mean absolute difference, least row cosine).

    python benchmarks/train_distributed.py --base runs/dist/one/base --features runs/dist/features/STORE

Make the base and store first, e.g. `potstill run recipes/minilm-256d.toml --corpus
../shared/data/corpus/wiki/sentences.txt.gz --set featurize.max_sentences=20000 --set
run.workdir=runs/dist --set run.name=one --until train`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import report
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parent.parent


def train(args: argparse.Namespace, ranks: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "potstill.cli", "train", "--recipe", str(args.recipe)]
    cmd += ["--base", str(args.base), "--features", str(args.features), "--out", str(out)]
    if ranks > 1:
        launcher = shutil.which("mlx.launch", path=str(Path(sys.executable).parent)) or "mlx.launch"
        cmd = [launcher, "-n", str(ranks), "--backend", "ring", *cmd]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    if res.returncode != 0 or "exited with code" in res.stderr or not (out / "manifest.json").is_file():
        raise RuntimeError(f"{ranks} rank(s) failed:\n{res.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="a distilled base model folder")
    ap.add_argument("--features", type=Path, required=True, help="a featurized store")
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes/minilm-256d.toml")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_distributed.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        walls = {1: train(args, 1, one), args.ranks: train(args, args.ranks, many)}
        rounds = [r["round"] for r in json.loads((one / "manifest.json").read_text())["rounds"]]
        rows = []
        for name in rounds:
            a = load_file(str(one / name / "model.safetensors"))["embeddings"]
            b = load_file(str(many / name / "model.safetensors"))["embeddings"]
            norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            diff = np.abs(a - b)
            cos = float(((a * b).sum(axis=1) / norms).min())
            rows.append({"round": name, "shape": list(a.shape), "max_abs": float(diff.max()),
                         "mean_abs": float(diff.mean()), "min_row_cosine": cos})  # fmt: skip
    lines = [
        f"`potstill train --recipe {args.recipe.name}` on {args.features.name}: 1 process "
        f"{walls[1]:.1f} s, {args.ranks} ranks {walls[args.ranks]:.1f} s wall "
        f"({walls[1] / walls[args.ranks]:.2f}x); table {rows[0]['shape'][0]:,} x {rows[0]['shape'][1]}.",
        "",
        "| round | max abs diff | mean abs diff | min row cosine |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['round']} | {r['max_abs']:.1e} | {r['mean_abs']:.1e} | {r['min_row_cosine']:.7f} |"
        for r in rows
    ]
    report(lines, args.out, {"walls": walls, "rounds": rows})


if __name__ == "__main__":
    main()
