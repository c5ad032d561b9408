"""Teacher speed: tokens/s of potstill's MLX teacher vs sentence-transformers (torch fp32).

One run, the same sentences for every engine, each engine in its own subprocess (so torch's and
MLX's thread pools never share a process), each at its best batch size, plus the MLX teacher
with POTSTILL_BLAS=none (MLX's bundled reference BLAS) on a subset. Prints a markdown table with
ratios to sentence-transformers and writes JSON.

    python benchmarks/teacher_speed.py                      # 5,000 sentences (the issue's size)
    python benchmarks/teacher_speed.py --sentences 1000     # quicker
    python benchmarks/teacher_speed.py --teacher "$(../shared/tools/get-mpnet-teacher)" --slow-sentences 0
    python benchmarks/teacher_speed.py --blas auto,/usr/lib/x86_64-linux-gnu/libopenblas.so.0 --repeats 3
    python benchmarks/teacher_speed.py --workers auto,0     # worker processes vs in-process streams
Needs `pip install -e ".[eval]" torch==2.13.0` (sentence-transformers + the packaged MiniLM).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from common import report

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared/data/corpus/wiki/sentences.txt.gz"
TEACHER = "sentence-transformers/all-MiniLM-L6-v2"


def read_sentences(path: Path, n: int) -> list[str]:
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(line.strip())
            if len(out) == n:
                break
    return out


def child(engine: str, teacher_id: str, corpus: Path, n: int, batch_size: int) -> dict[str, float | str]:
    """Runs in a subprocess: encode the sentences once to warm up (every batch shape traced, the
    worker processes started), then time a second pass: the steady state of a long featurize."""
    sentences = read_sentences(corpus, n)
    if engine == "mlx":
        import potstill
        from potstill.teacher.backend import blas_state
        from potstill.teacher.teacher import Teacher

        teacher = Teacher.load(teacher_id)
        tokens = sum(len(ids) for ids in teacher.tokenize(sentences))
        teacher.pool_min_tokens = 0  # the warm-up starts the worker processes, outside the timing
        started = time.perf_counter()
        teacher.encode(sentences, batch_size=batch_size)
        warmup = time.perf_counter() - started
        workers = teacher.workers
        pool_start = teacher._pool.start_seconds if teacher._pool is not None else 0.0

        def run() -> object:
            return teacher.encode(sentences, batch_size=batch_size)

        blas = blas_state().library or "bundled reference BLAS"
        version = f"potstill {potstill.__version__}"
    else:
        import torch
        from sentence_transformers import SentenceTransformer

        from potstill.teacher import checkpoint

        model = SentenceTransformer(str(checkpoint.resolve(teacher_id)), device="cpu")
        tok = model.tokenizer(sentences, truncation=True, max_length=model.max_seq_length)
        tokens = sum(len(ids) for ids in tok["input_ids"])
        model.encode(sentences, batch_size=batch_size)

        def run() -> object:
            return model.encode(sentences, batch_size=batch_size)

        blas = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
        version = blas
        workers, warmup, pool_start = 0, 0.0, 0.0
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "blas": blas,
        "version": version,
        "workers": workers,
        "warmup_seconds": warmup,  # MLX: includes starting the worker processes
        "pool_start_seconds": pool_start,  # MLX: starting the worker processes alone
    }


def spawn(engine: str, teacher: str, corpus: Path, n: int, batch_size: int, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--teacher", teacher, "--corpus", str(corpus)]
    cmd += ["--sentences", str(n), "--batch-size", str(batch_size)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default=TEACHER, help="hub id or folder (default: the packaged MiniLM)")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--sentences", type=int, default=5000)
    ap.add_argument("--batch-sizes", default="32,64,128")
    ap.add_argument(
        "--slow-sentences", type=int, default=500, help="subset for POTSTILL_BLAS=none (0: no such row)"
    )
    ap.add_argument(
        "--blas",
        default="auto",
        help="comma-separated POTSTILL_BLAS settings, one MLX row each (auto, or a library path)",
    )
    ap.add_argument(
        "--workers",
        default="auto",
        help="comma-separated POTSTILL_TEACHER_WORKERS settings, one MLX row per BLAS each "
        "(auto: the default, one process per core; 0: in-process streams)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="rounds over all engines; each keeps its best")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/teacher_speed.json")
    ap.add_argument("--child", choices=["mlx", "st"], help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=64, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.teacher, args.corpus, args.sentences, args.batch_size)))
        return
    if not args.corpus.is_file():
        sys.exit(f"corpus {args.corpus} not found; pass --corpus PATH (sentences.txt.gz)")
    env = dict(os.environ)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    blas = [b.strip() for b in args.blas.split(",") if b.strip()]
    workers = [w.strip() for w in args.workers.split(",") if w.strip()]
    engines: dict[str, tuple[str, dict[str, str]]] = {"st": ("st", env)}
    for b in blas:
        for w in workers:
            settings = ([] if b == "auto" else [f"POTSTILL_BLAS={b}"]) + (
                [] if w == "auto" else [f"POTSTILL_TEACHER_WORKERS={w}"]
            )
            name = " ".join(["mlx", *settings])
            engine_env = env | {"POTSTILL_BLAS": b} | ({} if w == "auto" else {"POTSTILL_TEACHER_WORKERS": w})
            engines[name] = ("mlx", engine_env)
    runs: dict[str, dict[int, dict]] = {name: {} for name in engines}
    for _ in range(args.repeats):
        for bs in sizes:  # alternate engines so machine noise hits all alike
            for name, (engine, engine_env) in engines.items():
                r = spawn(engine, args.teacher, args.corpus, args.sentences, bs, engine_env)
                if bs not in runs[name] or r["tokens_per_s"] > runs[name][bs]["tokens_per_s"]:
                    runs[name][bs] = r
                print(f"{name:>4} batch {bs:>4}: {r['tokens_per_s']:9.0f} tokens/s", file=sys.stderr)
    slow_n = min(args.slow_sentences, args.sentences)
    slow = fast_same = None
    if slow_n > 0:
        slow = spawn("mlx", args.teacher, args.corpus, slow_n, 64, env | {"POTSTILL_BLAS": "none"})
        fast_same = spawn("mlx", args.teacher, args.corpus, slow_n, 64, env)
    best = {e: max(runs[e].items(), key=lambda kv: kv[1]["tokens_per_s"]) for e in runs}
    st_rate = best["st"][1]["tokens_per_s"]
    rows = [("sentence-transformers fp32 (anchor)", *best["st"], args.sentences)]
    rows += [
        (
            "potstill MLX teacher" + ("" if name == "mlx" else " (" + name.removeprefix("mlx ") + ")"),
            *best[name],
            args.sentences,
        )
        for name in engines
        if name != "st"
    ]
    lines = [
        f"Teacher: {args.teacher}, {args.sentences} wiki sentences, "
        f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}; "
        f"best of {args.repeats} alternating round(s).",
        "",
        "| engine | BLAS | worker processes | best batch | sentences | tokens/s | vs sentence-transformers |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, bs, r, n in rows:
        procs = r.get("workers") or "none (in-process)"
        lines.append(
            f"| {name} | {r['blas']} | {procs} | {bs} | {n} | {r['tokens_per_s']:.0f} | "
            f"{r['tokens_per_s'] / st_rate:.2f}x |"
        )
    if slow is not None and fast_same is not None:
        ratio_slow = slow["tokens_per_s"] / fast_same["tokens_per_s"]
        lines.append(
            f"| potstill MLX teacher, POTSTILL_BLAS=none | {slow['blas']} | {slow.get('workers') or 'none'} | 64 | {slow_n} | "
            f"{slow['tokens_per_s']:.0f} | {slow['tokens_per_s'] / st_rate:.2f}x "
            f"({ratio_slow:.3f}x the fast-BLAS MLX teacher on the same {slow_n}) |"
        )
    report(lines, args.out, {"runs": runs, "blas_none": slow, "blas_default_same_subset": fast_same})


if __name__ == "__main__":
    main()
