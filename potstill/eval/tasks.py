"""Task folders: read and check `task.json` and its split files before any model runs.

A task folder is `task.json` (name, type, main_score, mteb_task, optional mteb_subset, splits,
classification's samples_per_label / n_experiments) plus jsonl split files, or the BEIR layout
for retrieval. `find_tasks` reads the specs, `load_task` reads one split into columns and checks
every row; every problem is a `TaskFolderError` naming the file and the expected layout.
`potstill.eval.mteb_tasks` turns the result into an mteb task.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TASK_JSON = "task.json"


class TaskFolderError(ValueError):
    """A task folder does not follow the layout; the message names the file and the layout."""


class TaskType(str, Enum):
    """The task types a folder may declare (mteb's names)."""

    STS = "STS"
    CLASSIFICATION = "Classification"
    PAIR_CLASSIFICATION = "PairClassification"
    RETRIEVAL = "Retrieval"


_NUMBER = (int, float)
# Per type: the columns each row of a jsonl split must have, with their JSON types.
COLUMNS: dict[TaskType, dict[str, tuple[type, ...]]] = {
    TaskType.STS: {"sentence1": (str,), "sentence2": (str,), "score": _NUMBER},
    TaskType.CLASSIFICATION: {"text": (str,), "label": (int,)},
    TaskType.PAIR_CLASSIFICATION: {"sentence1": (str,), "sentence2": (str,), "labels": (int,)},
}
CORPUS_COLUMNS: dict[str, tuple[type, ...]] = {"_id": (str, int), "text": (str,)}
QUERY_COLUMNS: dict[str, tuple[type, ...]] = {"_id": (str, int), "text": (str,)}
QRELS_HEADER = ["query-id", "corpus-id", "score"]

LAYOUT: dict[TaskType, str] = {
    TaskType.STS: "an STS folder holds task.json and {split}.jsonl, one JSON object per line: "
    '{"sentence1": str, "sentence2": str, "score": number}',
    TaskType.CLASSIFICATION: "a Classification folder holds task.json, train.jsonl and {split}.jsonl, "
    'one JSON object per line: {"text": str, "label": int}',
    TaskType.PAIR_CLASSIFICATION: "a PairClassification folder holds task.json and {split}.jsonl, "
    'one JSON object per line: {"sentence1": str, "sentence2": str, "labels": 0 or 1}',
    TaskType.RETRIEVAL: 'a Retrieval folder (BEIR layout) holds task.json, corpus.jsonl {"_id", "title", '
    '"text"}, queries.jsonl {"_id", "text"} and qrels/{split}.tsv with the header '
    "query-id<TAB>corpus-id<TAB>score",
}
TASK_JSON_LAYOUT = (
    'task.json is an object with "name", "type" (one of STS, Classification, PairClassification, '
    'Retrieval), "main_score", "mteb_task", optional "mteb_subset", "splits" {name: rows} and, '
    'for Classification, optional "samples_per_label" and "n_experiments"'
)


@dataclass(frozen=True)
class TaskSpec:
    """What `task.json` says (or, for an mteb hub task, its metadata; `folder` is then None)."""

    name: str
    type: TaskType
    main_score: str
    mteb_task: str
    folder: Path | None = None
    mteb_subset: str | None = None
    splits: dict[str, int] = field(default_factory=dict)
    samples_per_label: int | None = None
    n_experiments: int | None = None


@dataclass
class TaskData:
    """One evaluation split of a task folder, checked, as columns (`tables`: file stem -> columns).

    STS / PairClassification: `{split: columns}`; Classification: `{"train": ..., split: ...}`;
    Retrieval: `{"corpus": ..., "queries": ...}` plus `qrels` {query id: {doc id: score}}.
    """

    spec: TaskSpec
    split: str
    tables: dict[str, dict[str, list[Any]]]
    qrels: dict[str, dict[str, int]] | None = None


def find_tasks(root: str | Path, names: Sequence[str] = ()) -> list[TaskSpec]:
    """The task folders under `root` (or `root` itself if it holds task.json), filtered by name."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise TaskFolderError(
            f"--tasks {base} is not a folder; pass a folder of task folders ({TASK_JSON_LAYOUT})"
        )
    folders = (
        [base] if (base / TASK_JSON).is_file() else sorted(p.parent for p in base.glob(f"*/{TASK_JSON}"))
    )
    if not folders:
        raise TaskFolderError(f"{base} holds no task folder (no */{TASK_JSON}); {TASK_JSON_LAYOUT}")
    order = list(TaskType)  # the dev score's order: STS, Classification, PairClassification, Retrieval
    specs = sorted((read_spec(f) for f in folders), key=lambda s: (order.index(s.type), s.name))
    if not names:
        return specs
    by_name = {s.name: s for s in specs} | {s.folder.name: s for s in specs if s.folder}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise TaskFolderError(f"no task {unknown} in {base}; known: {', '.join(s.name for s in specs)}")
    return [by_name[n] for n in dict.fromkeys(names)]


def read_spec(folder: Path) -> TaskSpec:
    """Read and check one folder's task.json."""
    path = folder / TASK_JSON
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise TaskFolderError(f"{path} is missing; {TASK_JSON_LAYOUT}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TaskFolderError(f"{path} is not readable JSON ({e}); {TASK_JSON_LAYOUT}") from e
    if not isinstance(raw, dict):
        raise TaskFolderError(f"{path} should hold a JSON object; {TASK_JSON_LAYOUT}")
    for key in ("name", "type", "main_score", "mteb_task"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise TaskFolderError(f"{path}: {key!r} is missing or not a string; {TASK_JSON_LAYOUT}")
    try:
        kind = TaskType(raw["type"])
    except ValueError as e:
        known = ", ".join(t.value for t in TaskType)
        raise TaskFolderError(f"{path}: unknown type {raw['type']!r}; use one of {known}") from e
    splits = raw.get("splits")
    if not isinstance(splits, dict) or not all(isinstance(v, int) for v in splits.values()):
        raise TaskFolderError(
            f"{path}: 'splits' should be an object {{split name: rows}}; {TASK_JSON_LAYOUT}"
        )
    ints = {k: raw.get(k) for k in ("samples_per_label", "n_experiments")}
    for key, value in ints.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise TaskFolderError(f"{path}: {key}={value!r} should be a positive integer")
    subset = raw.get("mteb_subset")
    if subset is not None and not isinstance(subset, str):
        raise TaskFolderError(f'{path}: mteb_subset={subset!r} should be a string such as "en"')
    return TaskSpec(
        name=raw["name"],
        type=kind,
        main_score=raw["main_score"],
        mteb_task=raw["mteb_task"],
        folder=folder,
        mteb_subset=subset,
        splits=dict(splits),
        samples_per_label=ints["samples_per_label"],
        n_experiments=ints["n_experiments"],
    )


def load_task(spec: TaskSpec, split: str = "test") -> TaskData:
    """Read and check the files of one evaluation split (and `train` for classification)."""
    if spec.folder is None:
        raise TaskFolderError(f"task {spec.name} is an mteb hub task and has no folder to read")
    if split not in spec.splits:
        raise TaskFolderError(
            f"{spec.folder / TASK_JSON}: no split {split!r} (splits: {', '.join(spec.splits)}); "
            "evaluate another split or add it"
        )
    if spec.type is TaskType.RETRIEVAL:
        return _load_retrieval(spec, split)
    names = ["train", split] if spec.type is TaskType.CLASSIFICATION and split != "train" else [split]
    if "train" not in spec.splits and "train" in names:
        raise TaskFolderError(f"{spec.folder / TASK_JSON}: splits lacks 'train'; {LAYOUT[spec.type]}")
    tables = {n: read_jsonl(spec.folder / f"{n}.jsonl", COLUMNS[spec.type], spec.type) for n in names}
    for name, columns in tables.items():
        _check_rows(spec, name, len(next(iter(columns.values()))), f"{name}.jsonl")
    if spec.type is TaskType.PAIR_CLASSIFICATION:
        bad = sorted(set(tables[split]["labels"]) - {0, 1})
        if bad:
            raise TaskFolderError(
                f"{spec.folder / f'{split}.jsonl'}: labels {bad} are not 0/1; {LAYOUT[spec.type]}"
            )
    return TaskData(spec, split, tables)


def read_jsonl(
    path: Path, columns: dict[str, tuple[type, ...]], kind: TaskType, optional: Sequence[str] = ()
) -> dict[str, list[Any]]:
    """Columns of a jsonl file; each row must hold `columns` with those JSON types."""
    layout = LAYOUT[kind]
    if not path.is_file():
        raise TaskFolderError(f"{path} is missing; {layout}")
    out: dict[str, list[Any]] = {c: [] for c in [*columns, *optional]}
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    _append_row(
                        out, _parse(line, path, number, layout), columns, optional, f"{path}:{number}", layout
                    )
    except UnicodeDecodeError as e:
        raise TaskFolderError(f"{path} is not UTF-8 text ({e}); {layout}") from e
    if not out[next(iter(columns))]:
        raise TaskFolderError(f"{path} is empty; {layout}")
    return out


def _parse(line: str, path: Path, number: int, layout: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise TaskFolderError(f"{path}:{number}: not JSON ({e}); {layout}") from e
    if not isinstance(row, dict):
        raise TaskFolderError(f"{path}:{number}: a row should be a JSON object; {layout}")
    return row


def _append_row(
    out: dict[str, list[Any]],
    row: dict[str, Any],
    columns: dict[str, tuple[type, ...]],
    optional: Sequence[str],
    where: str,
    layout: str,
) -> None:
    for name, types in columns.items():
        if name not in row:
            raise TaskFolderError(f"{where}: no {name!r} column (the row has {sorted(row)}); {layout}")
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, types):
            want = " or ".join(t.__name__ for t in types)
            raise TaskFolderError(f"{where}: {name}={value!r} should be {want}; {layout}")
        out[name].append(value)
    for name in optional:
        value = row.get(name) or ""
        if not isinstance(value, str):
            raise TaskFolderError(f"{where}: {name}={value!r} should be a string; {layout}")
        out[name].append(value)


def _check_rows(spec: TaskSpec, split: str, rows: int, what: str) -> None:
    declared = spec.splits[split]
    if declared != rows:
        raise TaskFolderError(
            f"{spec.folder}/{what} has {rows} rows but task.json splits says {split}: {declared}; "
            "is the file truncated? Fix the file or the count"
        )


def _load_retrieval(spec: TaskSpec, split: str) -> TaskData:
    assert spec.folder is not None
    kind = TaskType.RETRIEVAL
    corpus = read_jsonl(spec.folder / "corpus.jsonl", CORPUS_COLUMNS, kind, optional=("title",))
    queries = read_jsonl(spec.folder / "queries.jsonl", QUERY_COLUMNS, kind)
    corpus["id"] = [str(i) for i in corpus.pop("_id")]
    queries["id"] = [str(i) for i in queries.pop("_id")]
    path = spec.folder / "qrels" / f"{split}.tsv"
    qrels = read_qrels(path)
    unknown = sorted(set(qrels) - set(queries["id"]))
    if unknown:
        raise TaskFolderError(
            f"{path}: {len(unknown)} query ids are not in queries.jsonl, e.g. {unknown[:3]}"
        )
    unknown = sorted({d for docs in qrels.values() for d in docs} - set(corpus["id"]))
    if unknown:
        raise TaskFolderError(
            f"{path}: {len(unknown)} corpus ids are not in corpus.jsonl, e.g. {unknown[:3]}"
        )
    _check_rows(spec, split, len(qrels), f"qrels/{split}.tsv (queries)")
    keep = [i for i, q in enumerate(queries["id"]) if q in qrels]  # as mteb's loader: queries with qrels
    queries = {k: [v[i] for i in keep] for k, v in queries.items()}
    return TaskData(spec, split, {"corpus": corpus, "queries": queries}, qrels)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A BEIR qrels file: header `query-id corpus-id score`, tab-separated, integer scores."""
    layout = LAYOUT[TaskType.RETRIEVAL]
    if not path.is_file():
        raise TaskFolderError(f"{path} is missing; {layout}")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise TaskFolderError(f"{path} is empty; {layout}")
        if [h.strip() for h in header[:3]] != QRELS_HEADER:
            raise TaskFolderError(f"{path}: header {header} should start with {QRELS_HEADER}; {layout}")
        for number, row in enumerate(reader, 2):
            if not row:
                continue
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except (IndexError, ValueError) as e:
                raise TaskFolderError(
                    f"{path}:{number}: {row} is not query-id, corpus-id, integer score"
                ) from e
    if not qrels:
        raise TaskFolderError(f"{path} has a header but no rows; {layout}")
    return qrels
