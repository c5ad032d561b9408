"""The offline recipes end to end: `potstill run recipes/minilm-{128,256,384}d.toml --corpus WIKI`.

Each recipe's eval stage scores its int8 model beside potion-base-8M (the anchor) in the same
`potstill eval` run, so the encode-speed ratio is taken on the same sentences in the same process.
Stage times come from each run's `run.json`; a stage that an earlier run finished (the featurized
store, shared by the three recipes) is reported with the time of the run that made it.

    python benchmarks/recipes_offline.py                      # the three recipes, 217K sentences
    python benchmarks/recipes_offline.py --recipes minilm-256d --set featurize.max_sentences=20000
    python benchmarks/recipes_offline.py --table-only         # re-print the table from run.json files

Writes benchmarks/results/recipes_offline.json and prints the markdown tables for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from common import POTSTILL, ROOT, SHARED

ANCHOR = "potion-base-8M"
STAGES = ("quantize", "featurize", "distill", "train", "export", "eval")


def run_recipe(recipe: str, corpus: Path, workdir: Path, sets: list[str]) -> dict[str, Any]:
    path = ROOT / "recipes" / f"{recipe}.toml"
    cmd = [*POTSTILL, "run", str(path), "--corpus", str(corpus), "--set", f"run.workdir={workdir}"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, cwd=ROOT)  # the recipes name ../shared paths from the checkout
    return summary_of(recipe, workdir)


def summary_of(recipe: str, workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / recipe / "run.json").read_text())
    return data


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def tables(summaries: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| recipe | dev score | SciFact NDCG@10 | rows x dims | MB | sentences/s | vs potion-base-8M speed |",
        "|---|---|---|---|---|---|---|",
    ]
    anchor_row = None
    for recipe, s in summaries.items():
        model = s["model"]
        label = Path(model["path"]).name
        mine, anchor = s["scores"].get(label, {}), s["scores"].get(ANCHOR, {})
        speed, anchor_speed = mine.get("sentences_per_second"), anchor.get("sentences_per_second")
        ratio = f"{speed / anchor_speed:.2f}x" if speed and anchor_speed else "-"
        lines.append(
            f"| {recipe} | {pct(mine.get('dev_score'))} | {pct(mine.get('scifact'))} | "
            f"{model['rows']} x {model['dims']} | {model['bytes'] / 1e6:.1f} | {speed or 0:,.0f} | {ratio} |"
        )
        if anchor:
            anchor_row = (
                f"| {ANCHOR} (same eval run as {recipe}) | {pct(anchor.get('dev_score'))} | "
                f"{pct(anchor.get('scifact'))} | - | {(anchor.get('size_bytes') or 0) / 1e6:.1f} | "
                f"{anchor_speed or 0:,.0f} | 1.00x |"
            )
    if anchor_row:
        lines.append(anchor_row)
    lines += [
        "",
        "| recipe | " + " | ".join(STAGES) + " | all stages |",
        "|---|" + "---|" * (len(STAGES) + 1),
    ]
    for recipe, s in summaries.items():
        cells = []
        for stage in STAGES:
            info = s["stages"].get(stage)
            if info is None:
                cells.append("-")
            else:
                secs = info.get("seconds")
                mark = "" if info["status"] == "ran" else " (earlier run)"
                cells.append(f"{secs / 60:.1f} min{mark}" if secs is not None else "-")
        lines.append(f"| {recipe} | " + " | ".join(cells) + f" | {s['seconds_all_stages'] / 60:.1f} min |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="minilm-256d,minilm-128d,minilm-384d")
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus/wiki/sentences.txt.gz")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs")
    ap.add_argument("--set", action="append", default=[], help="stage.key=value for every recipe")
    ap.add_argument("--table-only", action="store_true", help="only read the runs' run.json files")
    args = ap.parse_args()
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    summaries = {}
    for recipe in recipes:
        if args.table_only:
            summaries[recipe] = summary_of(recipe, args.workdir)
        else:
            summaries[recipe] = run_recipe(recipe, args.corpus, args.workdir, args.set)
    out = ROOT / "benchmarks/results/recipes_offline.json"
    out.write_text(json.dumps(summaries, indent=2) + "\n")
    print(tables(summaries))


if __name__ == "__main__":
    main()
