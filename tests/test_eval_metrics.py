"""mteb's metrics on hand-made task folders, with a tiny static model whose cosines are known.

Every word of the tiny model is a unit vector at a known angle, so every cosine, and with it the
Spearman correlation, average precision, accuracy and NDCG@10 of each tiny task, is worked out by
hand below. conftest's tiny random BERT stands in for the teacher. No network.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mteb")

from model2vec import StaticModel
from scipy.stats import spearmanr
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from potstill.eval.config import EvalConfig
from potstill.eval.models import StaticEncoder, TeacherEncoder
from potstill.eval.mteb_tasks import hub_task, to_mteb
from potstill.eval.run import evaluate, evaluate_task
from potstill.eval.scores import ScoreError, TaskScore
from potstill.eval.tasks import TaskFolderError, TaskType, load_task, read_spec

ANGLES = {"anchor": 0, "a10": 10, "a20": 20, "a50": 50, "a70": 70, "a80": 80, "a85": 85}

# STS: cosine order a10 > a20 > a50 > a70; gold order a10 > a20 > a70 > a50.
# Ranks gold (4, 3, 2, 1) vs predicted (4, 3, 1, 2): rho = 1 - 6 * 2 / (4 * 15) = 0.8.
STS = [("anchor", "a10", 5.0), ("anchor", "a20", 4.0), ("anchor", "a70", 1.0), ("anchor", "a50", 0.0)]
STS_SPEARMAN = 0.8
# Pairs ranked by cosine: a10 (1), a20 (0), a50 (1), a70 (0): AP = (1/1 + 2/3) / 2. Every mteb
# distance ranks them alike (unit vectors within 90 degrees of the anchor), so max AP is the same.
PAIRS = [("anchor", "a10", 1), ("anchor", "a20", 0), ("anchor", "a50", 1), ("anchor", "a70", 0)]
PAIR_AP = (1 + 2 / 3) / 2
# Classification: two clusters (0-20 and 70-85 degrees); the last test row is labelled against
# its cluster, so accuracy is 3/4 whichever 2 samples per label train the classifier.
TRAIN = [("anchor", 0), ("a10", 0), ("a20", 0), ("a70", 1), ("a80", 1), ("a85", 1)]
TEST = [("a10", 0), ("a20", 0), ("a80", 1), ("anchor", 1)]
ACCURACY = 0.75
# Retrieval: q1 (anchor) ranks d1 a10, d2 a20, d3 a50, d4 a80 and its relevant doc d2 comes 2nd;
# q2 (a85) ranks d4 first, its relevant doc. q3 has no qrels and is left out, as mteb does.
CORPUS = {"d1": "a10", "d2": "a20", "d3": "a50", "d4": "a80"}
QUERIES = {"q1": "anchor", "q2": "a85", "q3": "a50"}
QRELS = {"q1": "d2", "q2": "d4"}
NDCG10 = (1 / math.log2(3) + 1) / 2


def write_static_model(path: Path) -> Path:
    """A model2vec folder: one 2-d unit vector per word, at the word's angle."""
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(ANGLES)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    rad = [math.radians(a) for a in ANGLES.values()]
    vectors = np.array([[0.0, 0.0], *[[math.cos(r), math.sin(r)] for r in rad]], dtype=np.float32)
    StaticModel(vectors, tokenizer, normalize=True).save_pretrained(path)
    return path


def write_task(root: Path, name: str, kind: str, mteb_task: str, main_score: str, **extra: Any) -> Path:
    """A task folder with its task.json; the caller writes the data files."""
    folder = root / name
    folder.mkdir(parents=True)
    spec = {"name": name, "type": kind, "main_score": main_score, "mteb_task": mteb_task} | extra
    (folder / "task.json").write_text(json.dumps(spec))
    return folder


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_dev_tasks(root: Path) -> Path:
    """The seven dev-score task folders (named as the real ones), each filled with the tiny data."""
    sts = [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in STS]
    for name in ("STSBenchmark", "SICK-R"):
        write_jsonl(
            write_task(root, name, "STS", name, "cosine_spearman", splits={"test": 4}) / "test.jsonl", sts
        )
    for name in ("Banking77Classification", "EmotionClassification", "AmazonCounterfactualClassification"):
        subset = {"mteb_subset": "en"} if name.startswith("Amazon") else {}
        protocol = {"splits": {"train": 6, "test": 4}, "samples_per_label": 2, "n_experiments": 3}
        folder = write_task(root, name, "Classification", name, "accuracy", **protocol, **subset)
        write_jsonl(folder / "train.jsonl", [{"text": t, "label": y} for t, y in TRAIN])
        write_jsonl(folder / "test.jsonl", [{"text": t, "label": y} for t, y in TEST])
    pairs = [{"sentence1": a, "sentence2": b, "labels": y} for a, b, y in PAIRS]
    twitter = write_task(
        root, "TwitterURLCorpus", "PairClassification", "TwitterURLCorpus", "max_ap", splits={"test": 4}
    )
    write_jsonl(twitter / "test.jsonl", pairs)
    scifact = write_task(root, "SciFact", "Retrieval", "SciFact", "ndcg_at_10", splits={"test": 2})
    write_jsonl(scifact / "corpus.jsonl", [{"_id": k, "title": "", "text": v} for k, v in CORPUS.items()])
    write_jsonl(scifact / "queries.jsonl", [{"_id": k, "text": v} for k, v in QUERIES.items()])
    (scifact / "qrels").mkdir()
    qrels = "".join(f"{q}\t{d}\t1\n" for q, d in QRELS.items())
    (scifact / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return root


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dev_tasks(tmp_path_factory.mktemp("tasks"))


@pytest.fixture(scope="module")
def static_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_static_model(tmp_path_factory.mktemp("models") / "tiny-static")


@pytest.fixture(scope="module")
def static(static_path: Path) -> StaticEncoder:
    return StaticEncoder.load(static_path)


def run_task(encoder: Any, folder: Path) -> TaskScore:
    spec = read_spec(folder)
    return evaluate_task(encoder, spec, to_mteb(load_task(spec, "test")), "test")


def test_sts_cosine_spearman(static: StaticEncoder, tasks: Path) -> None:
    score = run_task(static, tasks / "STSBenchmark")
    assert score.metric == "cosine_spearman"
    assert score.value == pytest.approx(STS_SPEARMAN)


def test_classification_accuracy_follows_task_json_protocol(static: StaticEncoder, tasks: Path) -> None:
    score = run_task(static, tasks / "Banking77Classification")
    assert score.value == pytest.approx(ACCURACY)
    per_experiment = score.mteb["scores"]["test"][0]["scores_per_experiment"]
    assert len(per_experiment) == 3  # n_experiments from task.json, not mteb's 10


def test_classification_subset(static: StaticEncoder, tasks: Path) -> None:
    score = run_task(static, tasks / "AmazonCounterfactualClassification")
    assert score.mteb["scores"]["test"][0]["hf_subset"] == "en"
    assert score.value == pytest.approx(ACCURACY)


def test_pair_classification_max_and_cosine_ap(static: StaticEncoder, tasks: Path) -> None:
    score = run_task(static, tasks / "TwitterURLCorpus")
    assert score.metric == "max_ap"
    assert score.value == pytest.approx(PAIR_AP)
    assert score.extras == {"cosine_ap": pytest.approx(PAIR_AP)}


def test_retrieval_ndcg_at_10(static: StaticEncoder, tasks: Path) -> None:
    score = run_task(static, tasks / "SciFact")
    assert score.value == pytest.approx(NDCG10, abs=1e-5)  # mteb rounds retrieval scores to 5 decimals


def test_teacher_through_mteb_matches_its_own_encode(tiny_bert: Path, tmp_path: Path) -> None:
    words = ["the cat sat on the mat.", "a dog ran", "hello world", "the quick brown fox", "it was lazy"]
    rows = [(words[0], words[i], float(i)) for i in range(1, 5)] + [(words[1], words[3], 2.5)]
    folder = write_task(tmp_path, "WordsSTS", "STS", "STSBenchmark", "cosine_spearman", splits={"test": 5})
    write_jsonl(folder / "test.jsonl", [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in rows])
    encoder = TeacherEncoder.load(str(tiny_bert), batch_size=2)
    score = run_task(encoder, folder)
    a = encoder.teacher.encode([r[0] for r in rows])
    b = encoder.teacher.encode([r[1] for r in rows])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert score.value == pytest.approx(spearmanr([r[2] for r in rows], cosine)[0])
    assert not math.isnan(score.value)
    assert encoder.label == f"{tiny_bert.name} (teacher)"
    assert encoder.size_bytes > (tiny_bert / "model.safetensors").stat().st_size


def test_teacher_gets_the_checkpoint_query_prompt(tmp_path: Path, make_bert: Callable[..., Path]) -> None:
    import mteb
    from mteb.types import PromptType

    encoder = TeacherEncoder.load(str(make_bert(tmp_path / "bert", prompts={"query": "represent this: "})))
    texts = ["the cat sat on the mat.", "a quick brown fox"]
    meta = mteb.get_task("SciFact").metadata
    got = encoder.encode(
        [{"text": texts}],
        task_metadata=meta,
        hf_split="test",
        hf_subset="default",
        prompt_type=PromptType.query,
    )
    np.testing.assert_allclose(got, encoder.teacher.encode(texts, prompt="query"), atol=1e-6)
    assert not np.allclose(got, encoder.teacher.encode(texts), atol=1e-3)
    docs = encoder.encode(
        [{"text": texts}],
        task_metadata=meta,
        hf_split="test",
        hf_subset="default",
        prompt_type=PromptType.document,
    )
    np.testing.assert_allclose(docs, encoder.teacher.encode(texts), atol=1e-6)


def test_dev_score_of_a_whole_run(static_path: Path, tasks: Path) -> None:
    run = evaluate(EvalConfig(models=(str(static_path),), tasks=str(tasks), speed_sentences=50))
    (model,) = run.models
    assert [s.name for s in run.tasks][:2] == ["SICK-R", "STSBenchmark"]  # dev-score order
    dev = model.dev
    assert dev.categories == {
        "STS": pytest.approx(STS_SPEARMAN),
        "Classification": pytest.approx(ACCURACY),
        "PairClassification": pytest.approx(PAIR_AP),
    }
    assert dev.dev_score == pytest.approx((STS_SPEARMAN + ACCURACY + PAIR_AP) / 3)
    assert dev.beside == pytest.approx(NDCG10, abs=1e-5)
    assert model.speed is not None and model.speed.sentences == 5  # distinct STSBenchmark test sentences
    assert run.speed_task == "STSBenchmark test"


def sts_folder(root: Path, mteb_task: str, main_score: str = "cosine_spearman", **extra: Any) -> Path:
    folder = write_task(root, "MySTS", "STS", mteb_task, main_score, splits={"test": 4}, **extra)
    write_jsonl(folder / "test.jsonl", [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in STS])
    return folder


@pytest.mark.parametrize(
    ("mteb_task", "extra", "message"),
    [
        ("STSBenchmarkk", {}, "'STSBenchmarkk' is not an mteb task"),
        ("Banking77Classification", {}, "type STS does not match mteb task Banking77Classification"),
        ("STS17", {}, "set mteb_subset to one"),
        ("STS17", {"mteb_subset": "xx"}, "has no subset 'xx'; use one of"),
    ],
)
def test_task_json_that_mteb_cannot_serve(
    tmp_path: Path, mteb_task: str, extra: dict[str, Any], message: str
) -> None:
    folder = sts_folder(tmp_path, mteb_task, **extra)
    with pytest.raises(TaskFolderError, match=message) as info:
        to_mteb(load_task(read_spec(folder), "test"))
    assert str(folder / "task.json") in str(info.value)


def test_a_main_score_mteb_does_not_report(static: StaticEncoder, tmp_path: Path) -> None:
    folder = sts_folder(tmp_path, "STSBenchmark", main_score="accuracy")
    with pytest.raises(
        ScoreError, match=r"no 'accuracy' for MySTS; set main_score in task.json to one of: .*cosine_spearman"
    ):
        run_task(static, folder)


def test_hub_tasks_take_the_same_path_without_injection(
    static_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mteb.abstasks.abstask import AbsTask

    spec, task = hub_task("STSBenchmark")
    assert (spec.type, spec.main_score, spec.folder) == (TaskType.STS, "cosine_spearman", None)
    assert not task.data_loaded  # mteb loads it from the hub when evaluated

    def offline(self: AbsTask, **kwargs: Any) -> None:
        raise ConnectionError("no network here")

    monkeypatch.setattr(AbsTask, "load_data", offline)
    cfg = EvalConfig(models=(str(static_path),), mteb=("STSBenchmark",), speed_sentences=0)
    with pytest.raises(
        TaskFolderError,
        match=r"--mteb STSBenchmark: mteb could not run it \(no network here\); hub tasks need network access",
    ):
        evaluate(cfg)
