"""A real `python -m potstill.cli eval` run on tiny data: a static model beside a tiny teacher.

The static model's words are 2-d unit vectors at known angles (as in test_eval_metrics.py), so
its STS Spearman (0.8) and pair-classification AP (5/6) are known by hand.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if importlib.util.find_spec("mteb") is None:  # cheaper than importorskip: only the subprocess imports it
    pytest.skip("potstill eval needs the eval extra (mteb)", allow_module_level=True)

from model2vec import StaticModel
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from potstill import manifest

ANGLES = {"anchor": 0, "a10": 10, "a20": 20, "a50": 50, "a70": 70}
STS = [("anchor", "a10", 5.0), ("anchor", "a20", 4.0), ("anchor", "a70", 1.0), ("anchor", "a50", 0.0)]
PAIRS = [("anchor", "a10", 1), ("anchor", "a20", 0), ("anchor", "a50", 1), ("anchor", "a70", 0)]


def write_static_model(path: Path) -> Path:
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(ANGLES)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    rad = [math.radians(a) for a in ANGLES.values()]
    vectors = np.array([[0.0, 0.0], *[[math.cos(r), math.sin(r)] for r in rad]], dtype=np.float32)
    StaticModel(vectors, tokenizer, normalize=True).save_pretrained(path)
    return path


def write_task(root: Path, name: str, kind: str, main_score: str, rows: list[dict[str, Any]]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    spec = {
        "name": name,
        "type": kind,
        "main_score": main_score,
        "mteb_task": name,
        "splits": {"test": len(rows)},
    }
    (folder / "task.json").write_text(json.dumps(spec))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_eval_writes_results_report_plots_and_manifest(
    tmp_path: Path, tiny_bert: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    static = write_static_model(tmp_path / "tiny-static")
    tasks = tmp_path / "tasks"
    write_task(
        tasks,
        "STSBenchmark",
        "STS",
        "cosine_spearman",
        [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in STS],
    )
    write_task(
        tasks,
        "TwitterURLCorpus",
        "PairClassification",
        "max_ap",
        [{"sentence1": a, "sentence2": b, "labels": y} for a, b, y in PAIRS],
    )
    out = tmp_path / "report"
    proc = run_cli(
        "eval", static, "--teacher", tiny_bert, "--tasks", tasks, "--out", out, "--speed-sentences", "5"
    )
    assert proc.returncode == 0, proc.stderr
    teacher = f"{tiny_bert.name} (teacher)"
    assert "tiny-static: dev score n/a" in proc.stdout and f"{teacher}: dev score n/a" in proc.stdout

    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["tiny-static", teacher]
    tiny = results["models"]["tiny-static"]
    assert tiny["tasks"]["STSBenchmark"]["main_score"] == pytest.approx(0.8)
    assert tiny["tasks"]["STSBenchmark"]["mteb"]["scores"]["test"][0]["cosine_spearman"] == pytest.approx(0.8)
    assert tiny["tasks"]["TwitterURLCorpus"]["main_score"] == pytest.approx(5 / 6)
    assert tiny["tasks"]["TwitterURLCorpus"]["extras"]["cosine_ap"] == pytest.approx(5 / 6)
    assert tiny["speed"]["sentences"] == 5 and tiny["size_bytes"] > 0
    assert results["models"][teacher]["kind"] == "teacher"
    assert set(results["models"][teacher]["tasks"]) == {"STSBenchmark", "TwitterURLCorpus"}
    assert results["speed_sentences_from"] == "STSBenchmark test"

    text = (out / "report.md").read_text()
    assert f"|  | tiny-static | {teacher} |" in text
    assert "| STSBenchmark | STS | cosine_spearman | 80.00 |" in text
    assert "| TwitterURLCorpus | PairClassification | cosine_ap | 83.33 |" in text
    assert "Dev score not computed: this run lacks SICK-R" in text
    for png in ("tasks.png", "speed.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert manifest.verify(out) == []
    data = manifest.read(out)
    assert data["stage"] == "eval" and data["config"]["models"] == [str(static)]
    assert set(data["versions"]) >= {"potstill", "mlx"}
    assert set(data["eval_versions"]) == {"mteb", "model2vec"}
    assert set(data["outputs"]) == {"results.json", "report.md", "tasks.png", "speed.png"}
    assert {i["path"] for i in data["inputs"]} >= {str(static), str(tasks / "STSBenchmark")}
