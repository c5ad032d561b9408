"""Task folders: reading every type, and a clear error (file + expected layout) for each defect.

None of these needs mteb: folders are read and checked before the eval extra is imported, so the
CLI cases at the end run `potstill eval` in-process on bad folders and without mteb.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from potstill.cli import main
from potstill.eval.tasks import TaskFolderError, TaskType, find_tasks, load_task, read_spec

STS_ROWS = [
    {"sentence1": "a b", "sentence2": "b c", "score": 4.5},
    {"sentence1": "c", "sentence2": "d", "score": 1},
]


def write_task(root: Path, folder_name: str, kind: str, files: dict[str, Any], **spec: Any) -> Path:
    """A task folder: task.json (defaults filled in) and files (lists of rows -> jsonl, str -> as is)."""
    folder = root / folder_name
    (folder / "qrels").mkdir(parents=True)
    main_score = {"STS": "cosine_spearman", "PairClassification": "max_ap", "Retrieval": "ndcg_at_10"}
    meta = {
        "name": folder_name,
        "type": kind,
        "main_score": main_score.get(kind, "accuracy"),
        "mteb_task": folder_name,
    }
    (folder / "task.json").write_text(json.dumps(meta | spec))
    for rel, content in files.items():
        text = content if isinstance(content, str) else "".join(json.dumps(r) + "\n" for r in content)
        (folder / rel).write_text(text)
    return folder


def sts(root: Path, rows: list[dict[str, Any]] | str = STS_ROWS, **spec: Any) -> Path:
    spec.setdefault("splits", {"test": 2})
    return write_task(root, "STSBenchmark", "STS", {"test.jsonl": rows}, **spec)


def retrieval(root: Path, qrels: str = "query-id\tcorpus-id\tscore\nq1\td2\t1\n", **spec: Any) -> Path:
    files = {
        "corpus.jsonl": [{"_id": "d1", "title": "T", "text": "x"}, {"_id": "d2", "text": "y"}],
        "queries.jsonl": [{"_id": "q1", "text": "find y"}, {"_id": 7, "text": "no qrels"}],
        "qrels/test.tsv": qrels,
    }
    return write_task(root, "SciFact", "Retrieval", files, **({"splits": {"test": 1}} | spec))


def test_each_type_reads_into_columns(tmp_path: Path) -> None:
    data = load_task(read_spec(sts(tmp_path)), "test")
    assert data.tables == {"test": {"sentence1": ["a b", "c"], "sentence2": ["b c", "d"], "score": [4.5, 1]}}
    rows = [{"text": "t", "label": 0}, {"text": "u", "label": 1}]
    folder = write_task(
        tmp_path, "Banking77Classification", "Classification", {"train.jsonl": rows, "test.jsonl": rows[:1]},
        splits={"train": 2, "test": 1}, samples_per_label=4, n_experiments=2,
    )  # fmt: skip
    data = load_task(read_spec(folder), "test")
    assert set(data.tables) == {"train", "test"} and data.tables["test"] == {"text": ["t"], "label": [0]}
    assert (data.spec.samples_per_label, data.spec.n_experiments) == (4, 2)
    data = load_task(read_spec(retrieval(tmp_path)), "test")
    assert data.tables["corpus"] == {"text": ["x", "y"], "title": ["T", ""], "id": ["d1", "d2"]}
    assert data.tables["queries"] == {"text": ["find y"], "id": ["q1"]}  # query 7 has no qrels
    assert data.qrels == {"q1": {"d2": 1}}


def test_find_tasks_orders_by_category_and_selects_by_name(tmp_path: Path) -> None:
    retrieval(tmp_path)
    sts(tmp_path)
    pairs = [{"sentence1": "a", "sentence2": "b", "labels": 1}]
    write_task(
        tmp_path,
        "Twitter",
        "PairClassification",
        {"test.jsonl": pairs},
        name="TwitterURLCorpus",
        splits={"test": 1},
    )
    assert [s.name for s in find_tasks(tmp_path)] == ["STSBenchmark", "TwitterURLCorpus", "SciFact"]
    assert [s.type for s in find_tasks(tmp_path)] == [
        TaskType.STS,
        TaskType.PAIR_CLASSIFICATION,
        TaskType.RETRIEVAL,
    ]
    # By task.json name or by folder name, in the order asked for.
    assert [s.name for s in find_tasks(tmp_path, ["SciFact", "Twitter"])] == ["SciFact", "TwitterURLCorpus"]
    assert [s.name for s in find_tasks(tmp_path / "SciFact")] == ["SciFact"]  # one task folder
    with pytest.raises(
        TaskFolderError, match=r"no task \['Nope'\] in .*; known: STSBenchmark, TwitterURLCorpus, SciFact"
    ):
        find_tasks(tmp_path, ["Nope"])


STS_LAYOUT = (
    r'an STS folder holds task.json and \{split\}.jsonl, one JSON object per line: \{"sentence1": str'
)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("", r"test.jsonl is empty; " + STS_LAYOUT),
        ("\n\n", r"test.jsonl is empty; "),
        (
            [{"sentence1": "a", "sentence2": "b", "label": 1}],
            r"test.jsonl:1: no 'score' column \(the row has \['label', 'sentence1', 'sentence2'\]\); "
            + STS_LAYOUT,
        ),
        ([*STS_ROWS[:1], {"text1": "a", "text2": "b", "score": 1}], r"test.jsonl:2: no 'sentence1' column"),
        (
            [{"sentence1": "a", "sentence2": "b", "score": "high"}],
            r"test.jsonl:1: score='high' should be int or float; ",
        ),
        ([{"sentence1": "a", "sentence2": "b", "score": True}], r"score=True should be int or float"),
        ([{"sentence1": 3, "sentence2": "b", "score": 1}], r"sentence1=3 should be str"),
        ('{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "a",\n', r"test.jsonl:2: not JSON"),
        ('["a", "b", 1]\n', r"test.jsonl:1: a row should be a JSON object"),
        (STS_ROWS * 2, r"test.jsonl has 4 rows but task.json splits says test: 2; is the file truncated\?"),
    ],
)
def test_malformed_split_files(tmp_path: Path, rows: Any, message: str) -> None:
    folder = sts(tmp_path, rows)
    with pytest.raises(TaskFolderError, match=message) as info:
        load_task(read_spec(folder), "test")
    assert str(folder / "test.jsonl") in str(info.value)


def test_missing_split_file_names_the_file_and_layout(tmp_path: Path) -> None:
    folder = write_task(
        tmp_path,
        "Emotion",
        "Classification",
        {"test.jsonl": [{"text": "t", "label": 0}]},
        splits={"train": 1, "test": 1},
    )
    message = (
        rf"{folder / 'train.jsonl'} is missing; a Classification folder holds task.json, train.jsonl and"
    )
    with pytest.raises(TaskFolderError, match=message):
        load_task(read_spec(folder), "test")
    rows = [{"text": "t", "label": "joy"}]
    folder = write_task(
        tmp_path,
        "Other",
        "Classification",
        {"test.jsonl": rows, "train.jsonl": rows},
        splits={"train": 1, "test": 1},
    )
    with pytest.raises(TaskFolderError, match=r"train.jsonl:1: label='joy' should be int; .*\"label\": int"):
        load_task(read_spec(folder), "test")


def test_split_not_in_task_json(tmp_path: Path) -> None:
    with pytest.raises(TaskFolderError, match=r"task.json: no split 'validation' \(splits: test\)"):
        load_task(read_spec(sts(tmp_path)), "validation")


def test_pair_labels_must_be_binary(tmp_path: Path) -> None:
    rows = [
        {"sentence1": "a", "sentence2": "b", "labels": 2},
        {"sentence1": "a", "sentence2": "c", "labels": 0},
    ]
    folder = write_task(tmp_path, "Twitter", "PairClassification", {"test.jsonl": rows}, splits={"test": 2})
    with pytest.raises(
        TaskFolderError, match=r"test.jsonl: labels \[2\] are not 0/1; a PairClassification folder"
    ):
        load_task(read_spec(folder), "test")


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("", r"test.tsv is empty; a Retrieval folder \(BEIR layout\) holds task.json, corpus.jsonl"),
        (
            "q\tc\ts\nq1\td2\t1\n",
            r"test.tsv: header \['q', 'c', 's'\] should start with \['query-id', 'corpus-id', 'score'\]",
        ),
        ("query-id\tcorpus-id\tscore\n", r"test.tsv has a header but no rows"),
        (
            "query-id\tcorpus-id\tscore\nq1\td2\tyes\n",
            r"test.tsv:2: \['q1', 'd2', 'yes'\] is not query-id, corpus-id, integer score",
        ),
        (
            "query-id\tcorpus-id\tscore\nq1\td9\t1\n",
            r"test.tsv: 1 corpus ids are not in corpus.jsonl, e.g. \['d9'\]",
        ),
        (
            "query-id\tcorpus-id\tscore\nq2\td1\t1\n",
            r"test.tsv: 1 query ids are not in queries.jsonl, e.g. \['q2'\]",
        ),
    ],
)
def test_malformed_qrels(tmp_path: Path, qrels: str, message: str) -> None:
    with pytest.raises(TaskFolderError, match=message):
        load_task(read_spec(retrieval(tmp_path, qrels)), "test")


def test_missing_corpus(tmp_path: Path) -> None:
    folder = retrieval(tmp_path)
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(TaskFolderError, match=r"corpus.jsonl is missing; a Retrieval folder \(BEIR layout\)"):
        load_task(read_spec(folder), "test")


@pytest.mark.parametrize(
    ("task_json", "message"),
    [
        (None, r"task.json is missing; task.json is an object with \"name\", \"type\""),
        ("{not json", r"task.json is not readable JSON"),
        ("[1, 2]", r"task.json should hold a JSON object"),
        (
            {"type": "STS", "main_score": "m", "mteb_task": "t", "splits": {}},
            r"task.json: 'name' is missing or not a string",
        ),
        (
            {"name": "n", "type": "Clustering", "main_score": "m", "mteb_task": "t", "splits": {}},
            r"task.json: unknown type 'Clustering'; use one of STS, Classification, PairClassification, Retrieval",
        ),
        (
            {"name": "n", "type": "STS", "main_score": "m", "mteb_task": "t", "splits": ["test"]},
            r"'splits' should be an object \{split name: rows\}",
        ),
        (
            {
                "name": "n",
                "type": "STS",
                "main_score": "m",
                "mteb_task": "t",
                "splits": {},
                "n_experiments": 0,
            },
            r"n_experiments=0 should be a positive integer",
        ),
    ],
)
def test_malformed_task_json(tmp_path: Path, task_json: Any, message: str) -> None:
    folder = tmp_path / "T"
    folder.mkdir()
    if task_json is not None:
        text = task_json if isinstance(task_json, str) else json.dumps(task_json)
        (folder / "task.json").write_text(text)
    with pytest.raises(TaskFolderError, match=message) as info:
        read_spec(folder)
    assert str(folder / "task.json") in str(info.value)


def test_tasks_root_must_hold_task_folders(tmp_path: Path) -> None:
    with pytest.raises(TaskFolderError, match=r"holds no task folder \(no \*/task.json\)"):
        find_tasks(tmp_path)
    with pytest.raises(TaskFolderError, match=r"--tasks .*nowhere is not a folder"):
        find_tasks(tmp_path / "nowhere")


# ------------------------------------------------------------------------- the CLI, in-process
def test_cli_names_the_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = sts(tmp_path / "tasks", [{"sentence1": "a", "sentence2": "b"}], splits={"test": 1})
    code = main(["eval", str(tmp_path), "--tasks", str(tmp_path / "tasks"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"potstill eval: error: {folder / 'test.jsonl'}:1: no 'score' column")
    assert '{"sentence1": str, "sentence2": str, "score": number}' in err
    assert not (tmp_path / "out").exists()


def test_cli_without_mteb_says_how_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mteb", None)  # makes `import mteb` fail as if not installed
    sts(tmp_path / "tasks")
    code = main(["eval", str(tmp_path), "--tasks", str(tmp_path / "tasks"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "potstill eval: error: potstill eval needs mteb" in err
    assert 'install the eval extra: pip install "potstill[eval]" torch==2.13.0' in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tasks", "T", "--out", "O"], "eval needs at least one MODEL folder or --teacher ID_OR_PATH"),
        (["M", "--out", "O"], "eval needs --tasks DIR"),
        (["M", "--task", "STSBenchmark", "--out", "O"], "--task selects task folders: pass --tasks DIR too"),
        (["M", "--tasks", "T"], "eval needs --out DIR"),
        (
            ["missing-model", "--tasks", "T", "--out", "O"],
            "MODEL missing-model is not a folder; pass model2vec folders",
        ),
    ],
)
def test_cli_usage_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "M").mkdir()
    sts(tmp_path / "T")
    assert main(["eval", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_dry_run_resolves_recipe_sets_and_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[eval]\nmodels = ["m1", "m2"]\ntasks = "data/eval"\nbatch_size = 8\nspeed_sentences = 100\n'
    )
    argv = ["eval", "--recipe", str(recipe), "--set", "task=STSBenchmark,SciFact", "--set", "batch_size=16"]
    assert main([*argv, "--speed-sentences", "10", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["models"] == ["m1", "m2"] and cfg["tasks"] == "data/eval"
    assert cfg["task"] == ["STSBenchmark", "SciFact"]
    assert (cfg["batch_size"], cfg["speed_sentences"], cfg["split"]) == (16, 10, "test")
    assert main(["eval", "m3", "--recipe", str(recipe), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["models"] == ["m3"]  # MODEL arguments replace the recipe's
    assert main(["eval", "--set", "speed_sentences=-1", "--dry-run"]) == 2
    assert "speed_sentences=-1 must be >= 0" in capsys.readouterr().err


def test_classification_needs_a_counted_train_split(tmp_path: Path) -> None:
    rows = [{"text": "t", "label": 0}, {"text": "u", "label": 1}]
    files = {"test.jsonl": rows, "train.jsonl": rows}
    folder = write_task(tmp_path, "A", "Classification", files, splits={"test": 2})
    with pytest.raises(TaskFolderError, match=r"A/task.json: splits lacks 'train'; a Classification folder"):
        load_task(read_spec(folder), "test")
    folder = write_task(tmp_path, "B", "Classification", files, splits={"train": 3, "test": 2})
    with pytest.raises(TaskFolderError, match=r"B/train.jsonl has 2 rows but task.json splits says train: 3"):
        load_task(read_spec(folder), "test")
