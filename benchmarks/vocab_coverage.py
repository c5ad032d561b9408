"""How well a training store covers each eval task's tokens, under a static model's tokenizer.

A static model learns a token's vector only from the store sentences the token occurs in, so a
task whose text is mostly tokens the store rarely holds is mostly scored on untrained (distilled)
rows. For each task (test split, every text column) the script reports tokens per text, the share
of token occurrences on rows the compared model (potion-base-8M) lacks, and the share whose token
occurs fewer than 1 / 10 / 100 times in the store's texts; and, per model, which of its rows are
another model's (same tokenizer vocabulary or not).

    python benchmarks/vocab_coverage.py --model runs/minilm-256d/minilm-256d-int8 \
        --store runs/features/all-MiniLM-L6-v2-sentences-217000-751cb8f1

Full size: every shard of the store (the default); `--max-sentences N` reads the first N only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import ROOT, SHARED, report
from tokenizers import Tokenizer

from potstill.eval.tasks import TaskType, find_tasks, load_task
from potstill.features.store import iter_store

THRESHOLDS = (1, 10, 100)


def store_texts(store: Path, limit: int | None) -> list[str]:
    texts: list[str] = []
    for shard_texts, _ in iter_store(store, verify=False):
        texts.extend(shard_texts)
        if limit is not None and len(texts) >= limit:
            return texts[:limit]
    return texts


def token_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [enc.ids for enc in tokenizer.encode_batch(texts, add_special_tokens=False)]


def task_texts(tasks: Path) -> dict[str, list[str]]:
    """Every text of each non-retrieval task's test split (retrieval: its queries)."""
    out: dict[str, list[str]] = {}
    for spec in find_tasks(tasks):
        data = load_task(spec, "test")
        if spec.type is TaskType.RETRIEVAL:
            out[spec.name] = list(data.tables["queries"]["text"])
            continue
        columns = data.tables["test"]
        out[spec.name] = [t for key in ("text", "sentence1", "sentence2") for t in columns.get(key, [])]
    return out


def coverage(ids: list[list[int]], counts: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    flat = np.fromiter((i for row in ids for i in row), dtype=np.int64)
    seen = counts[flat]
    row: dict[str, float] = {
        "texts": len(ids),
        "tokens_per_text": round(len(flat) / max(len(ids), 1), 2),
        "not_in_compare_pct": round(100 * float(np.mean(~theirs[flat])), 2),
    }
    for k in THRESHOLDS:
        row[f"under_{k}_pct"] = round(100 * float(np.mean(seen < k)), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="model2vec folder (its tokenizer.json)")
    parser.add_argument("--store", type=Path, required=True, help="the featurized store it was trained on")
    parser.add_argument("--compare", type=Path, default=SHARED / "models/potion-base-8M")
    parser.add_argument("--tasks", type=Path, default=SHARED / "eval")
    parser.add_argument("--max-sentences", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/vocab_coverage.json")
    args = parser.parse_args()

    tokenizer = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    vocab = tokenizer.get_vocab()
    other = Tokenizer.from_file(str(args.compare / "tokenizer.json")).get_vocab()
    shared = sum(1 for token, i in other.items() if vocab.get(token) == i)
    print(
        f"{args.model.name}: {len(vocab)} rows; {args.compare.name}: {len(other)} rows, "
        f"{shared} of them the same token at the same row here"
    )

    texts = store_texts(args.store, args.max_sentences)
    store_ids = np.fromiter((i for ids in token_ids(tokenizer, texts) for i in ids), dtype=np.int64)
    counts = np.bincount(store_ids, minlength=len(vocab))
    theirs = np.zeros(len(vocab), dtype=bool)
    theirs[[i for token, i in vocab.items() if token in other]] = True
    print(f"store: {len(texts)} sentences, {int(counts.sum())} tokens")

    results = {
        name: coverage(token_ids(tokenizer, t), counts, theirs) for name, t in task_texts(args.tasks).items()
    }
    head = [
        "task",
        "texts",
        "tokens/text",
        f"not in {args.compare.name} %",
        *(f"< {k} in store %" for k in THRESHOLDS),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = [
            name,
            r["texts"],
            r["tokens_per_text"],
            r["not_in_compare_pct"],
            *(r[f"under_{k}_pct"] for k in THRESHOLDS),
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    record = {
        "model": str(args.model),
        "store": str(args.store),
        "sentences": len(texts),
        "compare": str(args.compare),
        "compare_rows_shared": shared,
        "tasks": results,
    }
    report(lines, args.out, record)


if __name__ == "__main__":
    main()
