"""The dev score, results.json, report.md and the plots, from hand-made scores (no mteb needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from potstill.config import ConfigError, build
from potstill.eval import plots, report
from potstill.eval.config import EvalConfig
from potstill.eval.scores import EvalRun, ModelScores, ScoreError, TaskScore, dev_summary, split_score
from potstill.eval.speed import Speed, measure
from potstill.eval.tasks import TaskSpec, TaskType

# Hand-picked main scores: STS mean 0.70, Classification mean 0.60, PairClassification 0.80.
MAIN = {
    "STSBenchmark": 0.75,
    "SICK-R": 0.65,
    "Banking77Classification": 0.70,
    "EmotionClassification": 0.45,
    "AmazonCounterfactualClassification": 0.65,
    "TwitterURLCorpus": 0.80,
    "SciFact": 0.50,
}
KINDS = {
    "STSBenchmark": "STS",
    "SICK-R": "STS",
    "TwitterURLCorpus": "PairClassification",
    "SciFact": "Retrieval",
}
METRICS = {"STS": "cosine_spearman", "PairClassification": "max_ap", "Retrieval": "ndcg_at_10"}


def spec(name: str) -> TaskSpec:
    kind = TaskType(KINDS.get(name, "Classification"))
    return TaskSpec(name, kind, METRICS.get(kind.value, "accuracy"), name)


def model(label: str, scores: dict[str, float], speed: Speed | None = None) -> ModelScores:
    m = ModelScores(label, "static", f"/models/{label}", 256, 30_000_000, speed)
    for name, value in scores.items():
        extras = {"cosine_ap": value - 0.01} if KINDS.get(name) == "PairClassification" else {}
        mteb = {"scores": {"test": [{"main_score": value, "ap": math.nan}]}}
        m.tasks[name] = TaskScore(
            name, spec(name).type.value, spec(name).main_score, value, extras, 1.0, mteb
        )
    return m


def make_run(*models: ModelScores, names: list[str] | None = None) -> EvalRun:
    return EvalRun(
        "test", [spec(n) for n in names or list(MAIN)], list(models), "STSBenchmark test", {"mteb": "2.x"}
    )


def test_dev_score_is_the_mean_of_three_category_means() -> None:
    dev = dev_summary(MAIN)
    assert dev.categories == {
        "STS": pytest.approx(0.70),
        "Classification": pytest.approx(0.60),
        "PairClassification": pytest.approx(0.80),
    }
    assert dev.dev_score == pytest.approx(0.70)  # not the mean of the 6 tasks (0.6667)
    assert dev.beside == 0.50 and dev.missing == ()


def test_dev_score_needs_every_dev_task() -> None:
    dev = dev_summary({k: v for k, v in MAIN.items() if k != "EmotionClassification"})
    assert dev.dev_score is None and dev.categories["Classification"] is None
    assert dev.categories["STS"] == pytest.approx(0.70)
    assert dev.missing == ("EmotionClassification",)


def test_split_score_averages_subsets_and_names_known_metrics() -> None:
    result = {"scores": {"test": [{"accuracy": 0.5, "f1": 0.1}, {"accuracy": 0.7, "f1": 0.2}]}}
    assert split_score(result, "test", "accuracy", "T") == pytest.approx(0.6)
    with pytest.raises(
        ScoreError, match=r"mteb gave no 'ndcg' for T; set main_score in task.json to one of: accuracy, f1"
    ):
        split_score(result, "test", "ndcg", "T")
    with pytest.raises(ScoreError, match="mteb returned no 'validation' scores for T"):
        split_score(result, "validation", "accuracy", "T")
    assert math.isnan(split_score({"scores": {"test": [{"accuracy": None}]}}, "test", "accuracy", "T"))


def test_results_json_is_strict_json_with_mtebs_scores(tmp_path: Path) -> None:
    run = make_run(model("potion", MAIN, Speed(2000, 0.05, 10)))
    data = json.loads(report.write_results(run, tmp_path).read_text(), parse_constant=pytest.fail)
    potion = data["models"]["potion"]
    assert potion["tasks"]["STSBenchmark"]["main_score"] == 0.75
    assert potion["tasks"]["STSBenchmark"]["mteb"]["scores"]["test"][0] == {"main_score": 0.75, "ap": None}
    assert potion["dev"]["dev_score"] == pytest.approx(0.70)
    assert potion["speed"]["sentences_per_second"] == pytest.approx(40_000)
    assert data["tasks"]["TwitterURLCorpus"]["main_score"] == "max_ap"


def test_report_puts_models_side_by_side_x100(tmp_path: Path) -> None:
    teacher = model("teacher", {k: v + 0.1 for k, v in MAIN.items()}, Speed(2000, 40.0, 1))
    text = report.render_report(
        make_run(model("potion", MAIN, Speed(2000, 0.05, 10)), teacher), [tmp_path / "tasks.png"]
    )
    assert "|  | potion | teacher |" in text
    assert "| **dev score** | **70.00** | **80.00** |" in text
    assert "| Classification | 60.00 | 70.00 |" in text
    assert "| SciFact NDCG@10 | 50.00 | 60.00 |" in text
    assert "| sentences/s | 40,000 | 50 |" in text
    assert "| TwitterURLCorpus | PairClassification | max_ap | 80.00 | 90.00 |" in text
    assert "| TwitterURLCorpus | PairClassification | cosine_ap | 79.00 | 89.00 |" in text
    assert "![tasks](tasks.png)" in text
    assert "Dev score not computed" not in text


def test_report_says_which_dev_tasks_are_missing() -> None:
    text = report.render_report(make_run(model("m", {"STSBenchmark": 0.75}), names=["STSBenchmark"]), [])
    assert "| **dev score** | **-** |" in text
    assert "Dev score not computed: this run lacks SICK-R, Banking77Classification" in text


@pytest.mark.parametrize("n_models", [1, 3])
def test_plots_are_pngs(tmp_path: Path, n_models: int) -> None:
    models = [
        model(f"m{i}", {k: v - 0.02 * i for k, v in MAIN.items()}, Speed(100, 0.01 * (i + 1), 5))
        for i in range(n_models)
    ]
    run = make_run(*models)
    for path in (plots.plot_tasks(run, tmp_path), plots.plot_speed(run, tmp_path)):
        assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_speed_plot_without_speed(tmp_path: Path) -> None:
    assert plots.plot_speed(make_run(model("m", MAIN)), tmp_path) is None
    assert not (tmp_path / plots.SPEED_PNG).exists()


def test_measure_keeps_the_best_pass() -> None:
    calls: list[int] = []

    def encode(texts: Any) -> None:
        calls.append(len(texts))

    (speed,) = measure([encode], ["s"] * 300, min_seconds=0.0, warmup=100)
    assert calls == [100, 300]  # a spread of 100 to warm up, then one timed pass
    assert speed.sentences == 300 and speed.passes == 1 and speed.per_second > 0


def test_measure_interleaves_the_models_and_each_gets_its_passes() -> None:
    now = [0.0]
    calls: list[str] = []

    def timed(name: str, seconds: list[float]) -> Any:
        """An encoder whose passes take `seconds[0]`, `seconds[1]`, ... (the last repeats) on the fake clock."""

        def encode(texts: Any) -> None:
            calls.append(name)
            now[0] += seconds[min(calls.count(name) - 1, len(seconds) - 1)]

        return encode

    # `a`: 1 ms warm-up, then passes of 5, 2, 3, 2, ... ms; `b`: 30 ms passes
    a, b = timed("a", [0.001, 0.005, 0.002, 0.003, 0.002]), timed("b", [0.03])
    fast, slow = measure([a, b], ["s"] * 10, min_seconds=0.05, max_passes=6, clock=lambda: now[0])
    assert calls[:2] == ["a", "b"]  # both warmed up first
    assert calls[2:] == ["a", "b", "a", "b", "a", "a", "a", "a"]  # in turns, not one model after the other
    assert calls[2:].count("a") == 6 and calls[2:].count("b") == 2  # `a` stops at max_passes, `b` at 60 ms
    assert fast.passes == 6 and slow.passes == 2
    assert fast.best_seconds == pytest.approx(0.002) and slow.best_seconds == pytest.approx(
        0.03
    )  # the best pass
    assert fast.per_second == pytest.approx(10 / 0.002)


def test_eval_config_lists_and_checks() -> None:
    cfg = build(EvalConfig, {"models": "a,b", "task": ["STSBenchmark"]})
    assert cfg.models == ("a", "b") and cfg.task == ("STSBenchmark",)
    with pytest.raises(ConfigError, match="batch_size=0 must be >= 1"):
        build(EvalConfig, {"batch_size": "0"})
