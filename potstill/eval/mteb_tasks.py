"""mteb tasks from checked task-folder data (offline injection), or from the hub by name.

Offline, `to_mteb` builds the task named by `mteb_task` and hands it the data (mteb 2.x):
`task.dataset` is a `DatasetDict` of the splits (`{subset: DatasetDict}` for a subset; for
retrieval `{subset: {split: {"corpus", "queries", "relevant_docs", "top_ranked": None}}}`) and
`task.data_loaded = True`, so mteb's own evaluator and metadata apply and nothing is downloaded.
Online, `hub_task` gives the same task with mteb's own data loading (`--mteb NAME`).
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

from datasets import Dataset, DatasetDict

from potstill.eval.tasks import TaskData, TaskFolderError, TaskSpec, TaskType

if TYPE_CHECKING:
    from mteb.abstasks.abstask import AbsTask

logger = logging.getLogger(__name__)


class _SupersededFilter(logging.Filter):
    """Drop mteb's 'task X is superseded by X.v2' notice: the dev tasks are the MTEB v1 ones on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is superseded by" not in record.getMessage()


def quiet_mteb() -> None:
    """Keep mteb's per-step INFO lines out of the log (unless debugging), and its superseded notice."""
    warnings.filterwarnings("ignore", message=r".*is superseded by.*")
    task_logger = logging.getLogger("mteb.abstasks.abstask")
    if not any(isinstance(f, _SupersededFilter) for f in task_logger.filters):
        task_logger.addFilter(_SupersededFilter())
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        import datasets

        logging.getLogger("mteb").setLevel(logging.WARNING)
        datasets.disable_progress_bars()  # mteb maps the retrieval corpus with a progress bar


def get_mteb_task(name: str, split: str, subset: str | None, where: str, one_subset: bool = True) -> AbsTask:
    """`mteb.get_task` restricted to one split (and subset), with errors that say where `name` came from.

    `one_subset`: a task folder holds one subset, so a multi-subset mteb task needs `mteb_subset`.
    """
    import mteb  # lazy: the optional eval extra

    try:
        task = mteb.get_task(name, eval_splits=[split], hf_subsets=[subset] if subset else None)
    except KeyError as e:
        raise TaskFolderError(f"{where}: {name!r} is not an mteb task ({e.args[0]})") from e
    except ValueError as e:  # no such subset
        subsets = ", ".join(mteb.get_task(name).hf_subsets)
        raise TaskFolderError(
            f"{where}: mteb task {name} has no subset {subset!r}; use one of {subsets}"
        ) from e
    if one_subset and subset is None and len(task.hf_subsets) > 1:
        raise TaskFolderError(
            f"{where}: mteb task {name} has subsets {', '.join(task.hf_subsets)}; set mteb_subset to one"
        )
    return task


def to_mteb(data: TaskData) -> AbsTask:
    """The mteb task for a task folder's split, with the folder's data injected."""
    spec = data.spec
    where = f"{spec.folder}/task.json"
    task = get_mteb_task(spec.mteb_task, data.split, spec.mteb_subset, where)
    if task.metadata.type != spec.type.value:
        raise TaskFolderError(
            f"{where}: type {spec.type.value} does not match mteb task {spec.mteb_task} "
            f"({task.metadata.type}); name an mteb task of type {spec.type.value}"
        )
    subset = spec.mteb_subset or "default"
    if spec.type is TaskType.RETRIEVAL:
        assert data.qrels is not None
        split_data = {
            "corpus": Dataset.from_dict(data.tables["corpus"]),
            "queries": Dataset.from_dict(data.tables["queries"]),
            "relevant_docs": data.qrels,
            "top_ranked": None,
        }
        task.dataset = {subset: {data.split: split_data}}
    else:
        splits = DatasetDict({name: Dataset.from_dict(cols) for name, cols in data.tables.items()})
        task.dataset = {subset: splits} if spec.mteb_subset else splits
    if spec.type is TaskType.CLASSIFICATION:
        # The folder's protocol wins over the mteb class defaults (they agree for the MTEB tasks).
        if spec.samples_per_label is not None:
            task.samples_per_label = spec.samples_per_label  # type: ignore[attr-defined]
        if spec.n_experiments is not None:
            task.n_experiments = spec.n_experiments  # type: ignore[attr-defined]
    task.data_loaded = True
    return task


def hub_task(name: str, split: str = "test") -> tuple[TaskSpec, AbsTask]:
    """An mteb task by name, loaded by mteb from the hub when evaluated (needs network access)."""
    task = get_mteb_task(name, split, None, "--mteb", one_subset=False)
    try:
        kind = TaskType(task.metadata.type)
    except ValueError as e:
        known = ", ".join(t.value for t in TaskType)
        raise TaskFolderError(
            f"--mteb {name}: type {task.metadata.type} is not supported; use {known}"
        ) from e
    if split not in task.metadata.eval_splits:
        raise TaskFolderError(
            f"--mteb {name}: no split {split!r} (splits: {', '.join(task.metadata.eval_splits)})"
        )
    spec = TaskSpec(name=name, type=kind, main_score=task.metadata.main_score, mteb_task=name)
    return spec, task
