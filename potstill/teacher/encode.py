"""`potstill encode`: embed the lines of a text file with the teacher into a `.npy` file."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from potstill import manifest
from potstill.config import DEFAULT_TEACHER, ConfigError, config_hash, setting, settle, to_dict
from potstill.teacher.teacher import Teacher
from potstill.textio import read_lines

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeConfig:
    """`potstill encode`: embed the lines of a text file with the teacher."""

    teacher: str = setting(DEFAULT_TEACHER, "hub id or local folder of a BERT-family sentence encoder")
    input: str = setting("", "text file, one text per line (.gz read transparently)")
    out: str = setting("", "output .npy file (float32, one row per non-empty input line)")
    batch_size: int = setting(64, "teacher batch size")
    prompt: str | None = setting(None, "prompt name from the checkpoint (e.g. query) or literal text")
    max_seq_length: int | None = setting(None, "teacher truncation (default: the checkpoint's)")
    skip_invalid: bool = setting(False, "skip lines that are not UTF-8")

    def __post_init__(self) -> None:
        settle(self)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")


def encode_file(cfg: EncodeConfig) -> str:
    """Embed `cfg.input`'s non-empty lines into `cfg.out` (float32 .npy) with its manifest;
    returns the one-line report."""
    if not cfg.input or not cfg.out:
        raise ConfigError("encode needs --input FILE and --out FILE.npy")
    out = Path(cfg.out)
    if out.suffix != ".npy":
        raise ConfigError(f"--out {out} should end in .npy")
    texts, stats = read_lines(cfg.input, skip_invalid=cfg.skip_invalid)
    logger.info("read %s from %s", stats.summary(), cfg.input)
    teacher = Teacher.load(cfg.teacher, max_seq_length=cfg.max_seq_length)
    start = time.perf_counter()
    emb = teacher.encode(texts, batch_size=cfg.batch_size, prompt=cfg.prompt)
    seconds = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, emb)
    tmp.replace(out)
    manifest.write(
        out,
        "encode",
        to_dict(cfg),
        config_hash(cfg),
        [manifest.Input.of(cfg.input)],
        [out],
        extra={
            "teacher": {"name": teacher.name, "weights_sha256": teacher.weights_sha256},
            "counts": {"texts": stats.read, "skipped": stats.skipped},
            "shape": list(emb.shape),
        },
    )
    rate = len(texts) / seconds if seconds > 0 else float("nan")
    return f"wrote {out}: {emb.shape[0]} x {emb.shape[1]} float32 ({rate:.0f} texts/s; {stats.summary()})"
