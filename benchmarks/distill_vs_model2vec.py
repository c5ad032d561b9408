"""Distill vs model2vec.distill, one run: the packaged MiniLM teacher at 256 dims.

(anchor) `model2vec.distill` (torch) on the same teacher folder, its defaults (256 dims, Zipf SIF);
(a) `potstill distill`, teacher wordpieces only, Zipf SIF: the same algorithm (parity);
(b) `potstill distill` with corpus words, corpus-frequency SIF and context token vectors (each
    entry's mean teacher output over its occurrences) from N wiki sentences.
All three are scored by one `potstill eval` run (dev score, SciFact), wall time of each build.

    python benchmarks/distill_vs_model2vec.py                          # 100K sentences, 30K words
    python benchmarks/distill_vs_model2vec.py --sentences 20000 --vocab-size 10000
Needs `pip install -e ".[eval]" torch==2.13.0` and, for the anchor, `pip install --no-deps
skeletoken==0.6.1` (model2vec[distill] pins transformers<5.4, but runs with 5.x: FINDINGS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import POTSTILL, SHARED, TEACHER, evaluate, rows_of, timed


def model2vec_anchor(out: Path) -> float:
    code = (
        "import sys; from model2vec.distill import distill; from potstill.teacher import checkpoint; "
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
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results/distill_vs_model2vec.json")
    args = ap.parse_args()
    potstill = POTSTILL
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        models = {
            "model2vec.distill (anchor)": work / "m2v",
            "potstill (a) teacher vocab, Zipf SIF": work / "a",
        }
        label_b = f"potstill (b) +{args.vocab_size} corpus words, corpus SIF, context vectors"
        models[label_b] = work / "b"
        seconds = {}
        seconds["model2vec.distill (anchor)"] = model2vec_anchor(work / "m2v")
        seconds["potstill (a) teacher vocab, Zipf SIF"] = timed(
            [*potstill, "distill", "--teacher", TEACHER, "--dims", str(args.dims), "--out", str(work / "a")]
        )
        cmd = [*potstill, "distill", "--teacher", TEACHER, "--dims", str(args.dims), "--out", str(work / "b")]
        cmd += ["--corpus", str(args.corpus), "--max-corpus-sentences", str(args.sentences)]
        cmd += ["--vocab-size", str(args.vocab_size), "--sif", "corpus", "--tokens", "context"]
        seconds[label_b] = timed(cmd)
        results = evaluate(list(models.values()), args.tasks, work / "eval")
        rows = {name: rows_of(path) for name, path in models.items()}
    table = render(results, models, rows, seconds, args)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "seconds": seconds, "table": table}, indent=2) + "\n")


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
