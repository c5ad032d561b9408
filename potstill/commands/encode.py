"""`potstill encode --teacher ID_OR_PATH --input texts.txt --out emb.npy`."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from potstill import manifest
from potstill.commands.common import add_common, print_config
from potstill.config import ConfigError, EncodeConfig, config_hash, stage_config, to_dict

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", help="hub id or local folder of a BERT-family sentence encoder")
    parser.add_argument("--input", help="text file, one text per line (.gz read transparently)")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--prompt", help="prompt name from the checkpoint (e.g. query) or literal text")
    parser.add_argument("--max-seq-length", type=int, dest="max_seq_length")
    parser.add_argument(
        "--skip-invalid", action="store_true", default=None, help="skip lines that are not UTF-8"
    )
    add_common(parser, out_help="output .npy file (float32, one row per non-empty input line)")


def run(args: argparse.Namespace) -> int:
    flags = {k: getattr(args, k) for k in ("teacher", "input", "out", "batch_size", "prompt")}
    flags |= {"max_seq_length": args.max_seq_length, "skip_invalid": args.skip_invalid}
    cfg = stage_config(EncodeConfig, "encode", args.recipe, flags, args.set)
    if args.dry_run:
        print_config(cfg)
        return 0
    if not cfg.input or not cfg.out:
        raise ConfigError("encode needs --input FILE and --out FILE.npy")
    out = Path(cfg.out)
    if out.suffix != ".npy":
        raise ConfigError(f"--out {out} should end in .npy")

    from potstill.distill.teacher import Teacher
    from potstill.textio import read_lines

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
    print(f"wrote {out}: {emb.shape[0]} x {emb.shape[1]} float32 ({rate:.0f} texts/s; {stats.summary()})")
    return 0
