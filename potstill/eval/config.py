"""`potstill eval`'s settings: MTEB scores, encode speed and size of static models (and a teacher)."""

from __future__ import annotations

from dataclasses import dataclass

from potstill.config import ConfigError, setting, settle

# How to get what `potstill eval` (and the quantize screen's NDCG@10) needs.
INSTALL = 'pip install "potstill[eval]" torch==2.13.0'


@dataclass(frozen=True)
class EvalConfig:
    """`potstill eval`: MTEB scores, encode speed and size of static models (and a teacher)."""

    models: tuple[str, ...] = setting((), "model2vec folders to evaluate", metavar="MODEL", positional="*")
    teacher: str | None = setting(
        None, "hub id or folder of the MLX teacher to evaluate beside them", metavar="ID_OR_PATH"
    )
    tasks: str = setting(
        "", "a folder of task folders (task.json + jsonl; BEIR for retrieval)", metavar="DIR"
    )
    task: tuple[str, ...] = setting(
        (), "run only this task folder (repeatable; default: all)", metavar="NAME", repeat=True
    )
    mteb: tuple[str, ...] = setting((), "mteb hub tasks by name (needs network access)", metavar="NAME,...")
    out: str = setting("", "output folder: results.json, report.md, PNG plots, manifest.json")
    split: str = setting("test", "evaluation split (default test; classification trains on train)")
    batch_size: int = setting(64, "teacher batch size")
    max_seq_length: int | None = setting(None, "teacher truncation (default: the checkpoint's)")
    speed_sentences: int = setting(2000, "sentences timed per model (0: no timing)")
    speed_task: str = setting("STSBenchmark", "the task folder whose sentences are timed")

    def __post_init__(self) -> None:
        settle(self)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.speed_sentences < 0:
            raise ConfigError(f"speed_sentences={self.speed_sentences} must be >= 0 (0 skips timing)")
