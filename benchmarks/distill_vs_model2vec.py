"""Distill vs model2vec.distill, one run: the packaged MiniLM teacher at 256 dims.

(anchor) `model2vec.distill` (torch) on the same teacher folder, its defaults (256 dims, Zipf SIF);
(a) `potstill distill`, teacher wordpieces only, Zipf SIF: the same algorithm (parity);
(b) `potstill distill` with corpus words and corpus-frequency SIF from N wiki sentences.
All three are scored by one `potstill eval` run (dev score, SciFact), wall time of each build.

    python benchmarks/distill_vs_model2vec.py                          # 100K sentences, 30K words
    python benchmarks/distill_vs_model2vec.py --sentences 20000 --vocab-size 10000
Needs `pip install -e ".[eval]" torch==2.13.0` and, for the anchor, `pip install --no-deps
skeletoken==0.6.1` (model2vec[distill] pins transformers<5.4, but runs with 5.x: FINDINGS.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared/data"
TEACHER = "sentence-transformers/all-MiniLM-L6-v2"


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - start


def model2vec_anchor(out: Path) -> float:
    code = (
        "import sys; from model2vec.distill import distill; from potstill.distill import checkpoint; "
        f"m = distill(str(checkpoint.resolve({TEACHER!r})), pca_dims=256); m.save_pretrained(sys.argv[1])"
    )
    return timed([sys.executable, "-c", code, str(out)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus/wiki/sentences.txt.gz")
    ap.add_argument("--tasks", type=Path, default=SHARED / "eval")
    ap.add_argument("--sentences", type=int, default=100_000)
    ap.add_argument("--vocab-size", type=int, default=30_000)
    ap.add_argument("--dims", type=int, default=256)
    ap.add_argument("--work", type=Path, help="keep the models here (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/distill_vs_model2vec.json")
    args = ap.parse_args()
    potstill = [sys.executable, "-m", "potstill.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        models = {
            "model2vec.distill (anchor)": work / "m2v",
            "potstill (a) teacher vocab, Zipf SIF": work / "a",
        }
        models[f"potstill (b) +{args.vocab_size} corpus words, corpus SIF"] = work / "b"
        seconds = {}
        seconds["model2vec.distill (anchor)"] = model2vec_anchor(work / "m2v")
        seconds["potstill (a) teacher vocab, Zipf SIF"] = timed(
            [*potstill, "distill", "--teacher", TEACHER, "--dims", str(args.dims), "--out", str(work / "a")]
        )
        cmd = [*potstill, "distill", "--teacher", TEACHER, "--dims", str(args.dims), "--out", str(work / "b")]
        cmd += ["--corpus", str(args.corpus), "--max-corpus-sentences", str(args.sentences)]
        cmd += ["--vocab-size", str(args.vocab_size)]
        seconds[f"potstill (b) +{args.vocab_size} corpus words, corpus SIF"] = timed(cmd)
        eval_dir = work / "eval"
        timed(
            [
                *potstill,
                "eval",
                *map(str, models.values()),
                "--tasks",
                str(args.tasks),
                "--out",
                str(eval_dir),
            ]
        )
        results = json.loads((eval_dir / "results.json").read_text())
        rows = {name: _rows(path) for name, path in models.items()}
    table = render(results, models, rows, seconds, args)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "seconds": seconds, "table": table}, indent=2) + "\n")


def _rows(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "numpy") as fh:
        return int(fh.get_slice("embeddings").get_shape()[0])


def render(
    results: dict,
    models: dict[str, Path],
    rows: dict[str, int],
    seconds: dict[str, float],
    args: argparse.Namespace,
) -> str:
    by_path = {str(Path(m["source"]).resolve()): m for m in results["models"].values()}
    lines = [
        f"Teacher {TEACHER}, {args.dims} dims; corpus words and frequencies from {args.sentences} wiki sentences.",
        "",
        "| model | rows | dev score | vs anchor | SciFact NDCG@10 | build seconds |",
        "|---|---|---|---|---|---|",
    ]
    anchor = 100 * by_path[str(models["model2vec.distill (anchor)"].resolve())]["dev"]["dev_score"]
    for name, path in models.items():
        dev = by_path[str(path.resolve())]["dev"]
        score, scifact = 100 * dev["dev_score"], dev.get("SciFact")
        lines.append(
            f"| {name} | {rows[name]} | {score:.2f} | {score - anchor:+.2f} | "
            f"{'-' if scifact is None else f'{100 * scifact:.2f}'} | {seconds[name]:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
