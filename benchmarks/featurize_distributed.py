"""Distributed featurize: one process against `mlx.launch -n N potstill featurize`, one run.

Every job featurizes the first SENTENCES wiki sentences with the packaged MiniLM teacher into its
own store; the anchor is the plain command (no launcher). For each rank count it reports the wall
time of the whole command (start-up included), the sentences/s this gives, the speed-up over the
anchor, and checks that the store equals the anchor's shard for shard (texts identical, the
largest vector difference printed). It then measures what distribution costs per job and per
shard, and from that the time N machines would take:

- the collectives: one identity exchange (two all_gathers) and three barriers per job, whatever
  the size; the shards themselves never cross the collective (every rank writes its own into the
  shared folder), so per shard only its files' bytes cross the filesystem, and rank 0 reads them
  back once to check their checksums (`check_seconds`);
- every rank reads (and dedupes) the whole corpus stream to find its shards: `read_seconds`.

    python benchmarks/featurize_distributed.py                             # 20,000 sentences, 1 and 2 ranks
    python benchmarks/featurize_distributed.py --sentences 2000 --shard-size 200   # a quick look

On one 2-core machine 2 ranks share the same cores as 1 rank's threads do: expect little gain.
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

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared/data/corpus/wiki/sentences.txt.gz"
TEACHER = "sentence-transformers/all-MiniLM-L6-v2"
PROJECT = (1, 2, 4, 8, 16)  # machines in the projection


def featurize_cmd(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "potstill.cli", "featurize", "--teacher", args.teacher,
        "--corpus", str(args.corpus), "--max-sentences", str(args.sentences),
        "--shard-size", str(args.shard_size), "--batch-size", str(args.batch_size), "--out", str(out),
    ]  # fmt: skip


def run_job(args: argparse.Namespace, ranks: int, out: Path) -> dict[str, float]:
    cmd = featurize_cmd(args, out)
    if ranks > 1:
        launcher = shutil.which("mlx.launch", path=str(Path(sys.executable).parent)) or "mlx.launch"
        cmd = [launcher, "-n", str(ranks), "--backend", "ring", *cmd]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    if res.returncode != 0 or "exited with code" in res.stderr or not (out / "manifest.json").is_file():
        raise RuntimeError(f"{ranks} rank(s) failed:\n{res.stderr[-3000:]}")
    info = json.loads((out / "manifest.json").read_text())
    return {
        "ranks": ranks,
        "wall_seconds": wall,
        "stage_seconds": info["seconds"],
        "sentences": info["counts"]["sentences"],
        "shards": len(info["shards"]),
        **info.get("distributed", {}),
    }


def compare(one: Path, other: Path) -> float:
    """The largest vector difference between two stores; an error if any text differs."""
    from potstill.features import store

    info = json.loads((one / "manifest.json").read_text())
    worst = 0.0
    for index in info["shards"]:
        t1, e1 = store.read_shard(one, index)
        t2, e2 = store.read_shard(other, index)
        if t1 != t2:
            raise AssertionError(f"shard {index}: the texts differ")
        worst = max(worst, float(np.abs(e1 - e2).max()))
    return worst


def read_seconds(args: argparse.Namespace) -> float:
    """What each rank spends reading the corpus stream (every rank reads all of it)."""
    from potstill.features.config import FeaturizeConfig
    from potstill.features.corpus import iter_sentences
    from potstill.features.featurize import corpus_spec
    from potstill.textio import LineStats

    cfg = FeaturizeConfig(teacher=args.teacher, corpus=str(args.corpus), max_sentences=args.sentences)
    start = time.perf_counter()
    for _ in iter_sentences(corpus_spec(cfg), LineStats()):
        pass
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--teacher", default=TEACHER)
    ap.add_argument("--sentences", type=int, default=20_000)
    ap.add_argument("--shard-size", type=int, default=1_000, help="small enough that every rank has shards")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ranks", default="2", help="rank counts to launch, besides the 1-process anchor")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/featurize_distributed.json")
    args = ap.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"corpus {args.corpus} not found; pass --corpus PATH")
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        anchor = run_job(args, 1, Path(tmp) / "r1")
        jobs.append({**anchor, "max_abs_diff": 0.0})
        for ranks in (int(r) for r in args.ranks.split(",")):
            job = run_job(args, ranks, Path(tmp) / f"r{ranks}")
            jobs.append({**job, "max_abs_diff": compare(Path(tmp) / "r1", Path(tmp) / f"r{ranks}")})
    reading = read_seconds(args)
    base = anchor["wall_seconds"]
    lines = [
        f"Teacher {args.teacher} (MLX), the first {args.sentences:,} wiki sentences, shards of "
        f"{args.shard_size:,}, batch {args.batch_size}; wall time of the whole command.",
        "",
        "| ranks | wall s | sentences/s | vs 1 process | store vs 1 process (max abs diff) | "
        "identity exchange s | rank 0 checks others' shards s |",
        "|---|---|---|---|---|---|---|",
    ]
    for j in jobs:
        lines.append(
            f"| {j['ranks']}{' (anchor, no launcher)' if j['ranks'] == 1 else ''} | {j['wall_seconds']:.1f} | "
            f"{j['sentences'] / j['wall_seconds']:.1f} | {base / j['wall_seconds']:.2f}x | "
            f"{j['max_abs_diff']:.1e} | {j.get('agree_seconds', 0):.4f} | {j.get('check_seconds', 0):.2f} |"
        )
    shards = anchor["shards"]
    encode = anchor["stage_seconds"] - reading  # the part N machines divide between them
    checks = [
        j["check_seconds"] / (j["shards"] - -(-j["shards"] // j["ranks"])) for j in jobs if j["ranks"] > 1
    ]
    per_shard_check = max(checks) if checks else 0.0
    fixed = max((j.get("agree_seconds", 0.0) for j in jobs), default=0.0)
    lines += [
        "",
        f"Per job: reading the corpus stream {reading:.1f} s (every rank reads it all); teacher and "
        f"writes {encode:.1f} s for {shards} shards in one process.",
        f"Per shard distributed: 0 bytes over the collective; rank 0 re-reads each other rank's "
        f"shard once to check it: {1000 * per_shard_check:.1f} ms a shard.",
        "",
        "Projected stage time on N machines (one rank each, a shared folder): reading + encode/N + "
        "the checks of the other ranks' shards + the identity exchange:",
        "",
        "| machines | projected s | speed-up |",
        "|---|---|---|",
    ]
    for n in PROJECT:
        t = reading + encode / n + per_shard_check * (shards - -(-shards // n)) + (fixed if n > 1 else 0.0)
        lines.append(f"| {n} | {t:.1f} | {anchor['stage_seconds'] / t:.2f}x |")
    report(lines, args.out, {"jobs": jobs, "read_seconds": reading})


if __name__ == "__main__":
    main()
