"""Train vs tokenlearn 0.2.1, one run: the packaged MiniLM teacher, N wiki sentences, 256 dims.

Both sides learn from the same featurized store (potstill featurize, or `--features`: its first
`--sentences` sentences and their targets) and are scored by one `potstill eval` run (dev score,
SciFact).

(ours)  `potstill distill` (teacher wordpieces, Zipf SIF; `--vocab-size` adds corpus words), then
        `potstill train` with the contrastive loss and a born-again round, at its defaults (or
        `--train-args`, e.g. a recipe), for each seed: every round (round1/, round2/ ..., final/)
        is scored.
(peer)  tokenlearn 0.2.1 at its defaults: `create_vocab(texts, 56000)`, model2vec `distill` (with
        the teacher tokenizer's padding disabled: FINDINGS.md), `train_model` (MSE, AdamW 1e-3,
        batch 256, early stopping). `--tokenlearn-as-shipped` also runs it with the padding on.

Training speed is sentences/s over each side's whole training loop (validation included), same
machine threads, and the same batch size (256) unless `--train-args` sets ours (the recipes: 1024).
Peak RSS is that of each training process.

    python benchmarks/train_vs_tokenlearn.py                 # 100K sentences, seeds 0,1,2 (~2 h on 2 cores)
    python benchmarks/train_vs_tokenlearn.py --features DIR --seeds 0 --skip-tokenlearn
    python benchmarks/train_vs_tokenlearn.py --features STORE --base BASE --train-args "--recipe R"
Needs `pip install -e ".[eval]" torch==2.13.0` and `pip install --no-deps tokenlearn==0.2.1
more-itertools skeletoken==0.6.1` (tokenlearn and model2vec[distill] pin older transformers, but
run with 5.x: FINDINGS.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import POTSTILL, ROOT, SHARED, TEACHER, evaluate, timed


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------- the peer
def tokenlearn_worker(features: Path, out: Path, fixed: bool, dims: int, sentences: int) -> None:
    """Run tokenlearn's pipeline on the store's first `sentences` in this process; write `out/bench.json`."""
    import numpy as np
    import torch
    from model2vec.distill import distill_from_model
    from tokenlearn import pretrain
    from tokenlearn.train import train_model
    from tokenlearn.utils import create_vocab
    from transformers import AutoModel, AutoTokenizer

    from potstill.features import store
    from potstill.teacher import checkpoint

    texts: list[str] = []
    vecs = []
    for t, e in store.iter_store(features):
        texts.extend(t)
        vecs.append(e)
        if len(texts) >= sentences:
            break
    targets = np.concatenate(vecs)[:sentences]
    texts = texts[:sentences]
    timings: dict[str, Any] = {"threads": torch.get_num_threads(), "fixed_padding": fixed}
    start = time.perf_counter()
    vocab = create_vocab(texts=texts, vocab_size=56_000)
    folder = str(checkpoint.resolve(TEACHER))
    model = AutoModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
    if fixed:
        tokenizer.backend_tokenizer.no_padding()  # as shipped it pads every new word to 128 tokens
    static = distill_from_model(model, tokenizer, vocabulary=vocab, pca_dims=dims, quantize_to="float32")
    timings["distill_seconds"] = time.perf_counter() - start
    timings["rows"] = int(static.embedding.shape[0])
    seen = {"train": 0}
    forward = pretrain.StaticModelFineTuner.forward

    def counting(self: Any, x: Any) -> Any:
        if self.training:
            seen["train"] += int(x.shape[0])
        return forward(self, x)

    pretrain.StaticModelFineTuner.forward = counting  # type: ignore[method-assign]
    start = time.perf_counter()
    trained = train_model(static, texts, targets, device="cpu", pca_dims=dims)
    timings["train_seconds"] = time.perf_counter() - start
    timings["train_sentences"] = seen["train"]
    timings["sentences_per_s"] = seen["train"] / timings["train_seconds"]
    timings["peak_rss_mb"] = peak_rss_mb()
    trained.save_pretrained(str(out))
    (out / "bench.json").write_text(json.dumps(timings, indent=2) + "\n")


def tokenlearn(features: Path, out: Path, fixed: bool, dims: int, sentences: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--tokenlearn-worker", str(features), str(out), "--dims", str(dims)]
    cmd += ["--sentences", str(sentences)]
    if not fixed:
        cmd.append("--as-shipped")
    wall = timed(cmd)
    info: dict[str, Any] = json.loads((out / "bench.json").read_text())
    info["wall_seconds"] = wall
    return info


# ----------------------------------------------------------------------------------------- ours
def ours(base: Path, features: Path, out: Path, seed: int, extra: list[str]) -> dict[str, Any]:
    cmd = [*POTSTILL, "train", "--base", str(base), "--features", str(features), "--out", str(out)]
    cmd += ["--loss", "contrastive", "--born-again", "--seed", str(seed), *extra]
    wall = timed(cmd)
    info = json.loads((out / "manifest.json").read_text())
    return {
        "wall_seconds": wall,
        "peak_rss_mb": info["peak_rss_mb"],
        "rounds": {
            r["round"]: {
                "sentences_per_s": r["sentences_per_s"],
                "loop_sentences_per_s": r["loop_sentences_per_s"],
                "steps": r["steps"],
                "best_epoch": r["best_epoch"],
                "train_seconds": r["train_seconds"],
            }
            for r in info["rounds"]
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus/wiki/sentences.txt.gz")
    ap.add_argument("--tasks", type=Path, default=SHARED / "eval")
    ap.add_argument("--sentences", type=int, default=100_000, help="featurized, or the first N of --features")
    ap.add_argument("--features", type=Path, help="a featurized store to reuse (default: featurize)")
    ap.add_argument("--base", type=Path, help="a distilled base to reuse (default: distill one)")
    ap.add_argument("--vocab-size", type=int, default=0, help="corpus words in our base (0: teacher's only)")
    ap.add_argument("--sif", default="zipf", help="SIF weighting of our base: zipf | corpus | none")
    ap.add_argument("--dims", type=int, default=256)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--train-args", default="", help="extra `potstill train` flags, space separated")
    ap.add_argument("--skip-tokenlearn", action="store_true")
    ap.add_argument("--tokenlearn-as-shipped", action="store_true", help="also run it with padding on")
    ap.add_argument("--work", type=Path, help="keep stores and models here (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_vs_tokenlearn.json")
    ap.add_argument("--tokenlearn-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--as-shipped", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tokenlearn_worker:
        tokenlearn_worker(
            *args.tokenlearn_worker, fixed=not args.as_shipped, dims=args.dims, sentences=args.sentences
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        seconds: dict[str, float] = {}
        features = args.features or work / "features"
        if not args.features:
            seconds["featurize"] = timed(
                [*POTSTILL, "featurize", "--teacher", TEACHER, "--corpus", str(args.corpus),
                 "--max-sentences", str(args.sentences), "--out", str(features)]
            )  # fmt: skip
        base = args.base or work / "base"
        if not args.base:
            seconds["distill"] = timed(
                [*POTSTILL, "distill", "--teacher", TEACHER, "--dims", str(args.dims), "--features",
                 str(features), "--vocab-size", str(args.vocab_size), "--sif", args.sif, "--out", str(base)]
            )  # fmt: skip
        runs: dict[str, Any] = {}
        models: dict[str, Path] = {"base (distill only)": base}
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = work / f"ours-seed{seed}"
            extra = ["--max-sentences", str(args.sentences), *args.train_args.split()]
            runs[f"ours seed {seed}"] = ours(base, features, out, seed, extra)
            for name in runs[f"ours seed {seed}"]["rounds"]:  # round1, [round2, ...], final
                label = "born-again" if name == "final" else f"round {name.removeprefix('round')}"
                models[f"ours {label}, seed {seed}"] = out / name
        peers = [] if args.skip_tokenlearn else [True] + ([False] if args.tokenlearn_as_shipped else [])
        for fixed in peers:
            name = "tokenlearn 0.2.1 " + ("(padding fixed)" if fixed else "(as shipped)")
            models[name] = work / ("fixed" if fixed else "shipped")
            runs[name] = tokenlearn(features, models[name], fixed, args.dims, args.sentences)
        results = evaluate(list(models.values()), args.tasks, work / "eval")
        table = render(results, models, runs, args)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"runs": runs, "seconds": seconds, "results": results, "table": table, "args": vars(args)}
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def render(results: dict[str, Any], models: dict[str, Path], runs: dict[str, Any], args: Any) -> str:
    by_path = {str(Path(m["source"]).resolve()): m for m in results["models"].values()}

    def dev(name: str) -> tuple[float, float | None]:
        d = by_path[str(models[name].resolve())]["dev"]
        return 100 * d["dev_score"], (None if d.get("SciFact") is None else 100 * d["SciFact"])

    lines = [
        f"Teacher {TEACHER}, {args.dims} dims, {args.sentences} featurized wiki sentences, seeds {args.seeds}.",
        "",
        "| model | dev score | SciFact NDCG@10 | train sentences/s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for name in models:
        score, sci = dev(name)
        speed, rss = "-", "-"
        if name.startswith("tokenlearn"):
            speed, rss = f"{runs[name]['sentences_per_s']:.0f}", f"{runs[name]['peak_rss_mb']:.0f}"
        elif name.startswith("ours"):
            seed = name.rsplit(" ", 1)[-1]
            r = runs[f"ours seed {seed}"]
            key = models[name].name  # the round's folder: round1, round2, ..., final
            speed, rss = f"{r['rounds'][key]['loop_sentences_per_s']:.0f}", f"{r['peak_rss_mb']:.0f}"
        lines.append(f"| {name} | {score:.2f} | {'-' if sci is None else f'{sci:.2f}'} | {speed} | {rss} |")
    seeds = [n.rsplit(" ", 1)[-1] for n in models if n.startswith("ours round 1")]
    if seeds:
        r1 = [dev(f"ours round 1, seed {s}")[0] for s in seeds]
        fin = [dev(f"ours born-again, seed {s}")[0] for s in seeds]
        sd = statistics.stdev(r1) if len(r1) > 1 else float("nan")
        sd2 = statistics.stdev(fin) if len(fin) > 1 else float("nan")
        gains = [f - r for f, r in zip(fin, r1, strict=True)]
        gain = statistics.mean(fin) - statistics.mean(r1)
        steps = {
            runs[f"ours seed {s}"]["rounds"][k]["steps"]
            for s in seeds
            for k in runs[f"ours seed {s}"]["rounds"]
        }
        lines += [
            "",
            f"- ours round 1: mean {statistics.mean(r1):.2f} (sd {sd:.2f}); born-again final: mean "
            f"{statistics.mean(fin):.2f} (sd {sd2:.2f}); gain {gain:+.2f} (per seed "
            + ", ".join(f"{g:+.2f}" for g in gains)
            + f"); above the larger sd: {'yes' if gain > max(sd, sd2) else 'no'}",
            f"- steps per round: {', '.join(str(n) for n in sorted(steps))}",
        ]
        peer = "tokenlearn 0.2.1 (padding fixed)"
        if peer in models:
            best = max(statistics.mean(r1), statistics.mean(fin))
            lines.append(f"- vs {peer}: {best - dev(peer)[0]:+.2f} dev score")
            ours_speed = statistics.mean(
                runs[f"ours seed {s}"]["rounds"]["round1"]["loop_sentences_per_s"] for s in seeds
            )
            lines.append(f"- training speed: {ours_speed / runs[peer]['sentences_per_s']:.2f}x tokenlearn's")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
