"""Featurize throughput and memory: the whole pipeline vs the teacher's raw `encode`, one run.

Each measurement runs in its own subprocess (peak RSS is per process): `potstill featurize` on the
first N wiki sentences, the MLX teacher's `encode` on the same N sentences (held in memory, no
store), and featurize at a second size to show that peak RSS stays flat (shards are streamed).

    python benchmarks/featurize_throughput.py                           # the issue's sizes: 100K, RSS at 20K/100K
    python benchmarks/featurize_throughput.py --sentences 5000 --rss-sizes 1000,5000   # quicker
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared/data/corpus/wiki/sentences.txt.gz"
TEACHER = "sentence-transformers/all-MiniLM-L6-v2"


def child_encode(corpus: Path, n: int, batch_size: int) -> dict[str, float]:
    from potstill.teacher.teacher import Teacher

    teacher = Teacher.load(TEACHER)
    with gzip.open(corpus, "rt", encoding="utf-8") as fh:
        texts = [line.strip() for _, line in zip(range(n), fh, strict=False) if line.strip()]
    start = time.perf_counter()
    teacher.encode(texts, batch_size=batch_size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"sentences": len(texts), "seconds": seconds, "peak_rss_mb": peak}


def run_featurize(
    corpus: Path, n: int, batch_size: int, out: Path, shard_size: int = 10_000
) -> dict[str, float]:
    cmd = [sys.executable, "-m", "potstill.cli", "featurize", "--teacher", TEACHER, "--corpus", str(corpus)]
    cmd += ["--max-sentences", str(n), "--batch-size", str(batch_size), "--out", str(out)]
    cmd += ["--shard-size", str(shard_size)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak < before:  # pragma: no cover - ru_maxrss is a running max over children
        peak = before
    data = json.loads((out / "manifest.json").read_text())
    # The stage's own timer: corpus reading, sharding, encode and writes, without the start-up.
    return {"sentences": data["counts"]["sentences"], "seconds": data["seconds"], "peak_rss_mb": peak / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--sentences", type=int, default=100_000)
    ap.add_argument("--rss-sizes", default="20000,100000", help="featurize sizes whose peak RSS is compared")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=10_000, help="featurize's default; smaller for subsets")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/featurize_throughput.json")
    ap.add_argument("--child-encode", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_encode:
        print(json.dumps(child_encode(args.corpus, args.sentences, args.batch_size)))
        return
    if not args.corpus.is_file():
        sys.exit(f"corpus {args.corpus} not found; pass --corpus PATH")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--child-encode", "--corpus", str(args.corpus)]
        cmd += ["--sentences", str(args.sentences), "--batch-size", str(args.batch_size)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ))
        results["encode"] = json.loads(res.stdout.strip().splitlines()[-1])
        results["featurize"] = run_featurize(
            args.corpus, args.sentences, args.batch_size, Path(tmp) / "f", args.shard_size
        )
        rss = {}
        for size in [int(s) for s in args.rss_sizes.split(",")]:
            if size == args.sentences:
                rss[size] = results["featurize"]["peak_rss_mb"]
                continue
            # A fresh interpreter per size: RUSAGE_CHILDREN's max would otherwise carry over.
            probe = [sys.executable, "-c", _RSS_PROBE, str(args.corpus), str(size), str(args.batch_size)]
            probe += [str(Path(tmp) / f"rss{size}"), str(args.shard_size)]
            out = subprocess.run(probe, capture_output=True, text=True, check=True)
            rss[size] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    enc, feat = results["encode"], results["featurize"]
    enc_rate = enc["sentences"] / enc["seconds"]
    feat_rate = feat["sentences"] / feat["seconds"]
    lines = [
        f"Teacher {TEACHER} (MLX), {args.sentences} wiki sentences, batch {args.batch_size}, "
        f"shards of {args.shard_size}.",
        "",
        "| what | sentences/s | seconds | peak RSS MB |",
        "|---|---|---|---|",
        f"| teacher encode (anchor, texts in memory) | {enc_rate:.1f} | {enc['seconds']:.0f} | {enc['peak_rss_mb']:.0f} |",
        f"| potstill featurize (stream, shards, checksums) | {feat_rate:.1f} | {feat['seconds']:.0f} | {feat['peak_rss_mb']:.0f} |",
        "",
        f"Pipeline overhead: {100 * (enc_rate / feat_rate - 1):.1f}% (featurize {feat_rate / enc_rate:.3f}x encode).",
        "Peak RSS of featurize by size: "
        + ", ".join(f"{k}: {v:.0f} MB" for k, v in sorted(rss.items()))
        + ".",
    ]
    report(lines, args.out, {"results": results, "rss_by_size": rss})


_RSS_PROBE = """
import json, sys
from pathlib import Path
sys.path.insert(0, __DIR__)
from featurize_throughput import run_featurize
corpus, n, bs, out = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
print(json.dumps(run_featurize(corpus, n, bs, out, int(sys.argv[5]))))
""".replace("__DIR__", repr(str(Path(__file__).resolve().parent)))


if __name__ == "__main__":
    main()
