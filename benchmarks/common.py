"""What the benchmark scripts share: paths, the teacher, timed `potstill` runs, one eval run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared/data"
TEACHER = "sentence-transformers/all-MiniLM-L6-v2"
POTSTILL = [sys.executable, "-m", "potstill.cli"]


def timed(cmd: list[str]) -> float:
    """Run a command; its wall seconds, or an error with the end of its stderr."""
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:5])} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - start


def evaluate(models: list[Path], tasks: Path, out: Path) -> dict[str, Any]:
    """One `potstill eval` run over the model folders; its results.json."""
    timed([*POTSTILL, "eval", *map(str, models), "--tasks", str(tasks), "--out", str(out)])
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


def rows_of(model: Path) -> int:
    """Rows of a model2vec folder's embedding table."""
    from safetensors import safe_open

    with safe_open(str(model / "model.safetensors"), "numpy") as fh:
        return int(fh.get_slice("embeddings").get_shape()[0])


def report(lines: list[str], out: Path, payload: dict[str, Any]) -> None:
    """Print a benchmark's table and write it, with the payload, as its results json."""
    table = "\n".join(lines)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**payload, "table": table}, indent=2) + "\n", encoding="utf-8")
