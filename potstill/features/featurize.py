"""Featurize: embed a corpus with the teacher into a resumable, mergeable shard store.

The corpus stream (`corpus.iter_sentences`) is cut into shards of `shard_size` sentences; shard k
belongs to part `k % num_parts`. A run computes the shards of its part that are not already
complete and sound, so rerunning the same command after any interruption (Ctrl-C, SIGKILL,
power loss) finishes the store with exactly the sentences of an uninterrupted run. A store grows:
a shard that a store beside it (same settings, another `max_sentences`) holds with the same
sentences is copied, not computed, so 50,000 sentences then 100,000 cost 100,000 encodes.
`merge_parts` joins the stores of all parts into the store a single run would have written.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from potstill import manifest
from potstill.config import config_hash, to_dict
from potstill.features import store
from potstill.features.config import FeaturizeConfig
from potstill.features.corpus import HF_PREFIX, CorpusSpec, iter_sentences
from potstill.teacher.teacher import Teacher
from potstill.textio import LineStats

logger = logging.getLogger(__name__)


def corpus_spec(cfg: FeaturizeConfig) -> CorpusSpec:
    return CorpusSpec(
        source=cfg.corpus,
        text_field=cfg.text_field,
        split_sentences=cfg.split_sentences,
        min_words=cfg.min_words,
        max_words=cfg.max_words,
        dedupe=cfg.dedupe,
        sample_rate=cfg.sample_rate,
        seed=cfg.seed,
        max_sentences=cfg.max_sentences,
        skip_invalid=cfg.skip_invalid,
    )


def _chunks(it: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(islice(it, size)):
        yield chunk


def identity(cfg: FeaturizeConfig, teacher: Any) -> dict[str, Any]:
    """What decides a store's content: shards of two runs mix only if this is equal."""
    spec = asdict(corpus_spec(cfg))
    if not cfg.corpus.startswith(HF_PREFIX):
        spec["source"] = os.path.basename(cfg.corpus)  # the same file may sit elsewhere on another machine
    # The weights' sha256 identifies the teacher; its path may differ between machines.
    return {
        "teacher_weights_sha256": teacher.weights_sha256,
        "quantization": teacher.quantization,
        "target": cfg.target,
        "pooling": "token-mean" if cfg.target == "token-mean" else teacher.pooling,
        "normalized": cfg.target == "teacher" and teacher.normalize,
        "prompt": teacher.prompt_text(cfg.prompt),
        "max_seq_length": teacher.max_seq_length,
        "dims": teacher.dim,
        "corpus": spec,
        "shard_size": cfg.shard_size,
    }


def featurize(cfg: FeaturizeConfig) -> Path:
    """Run (or resume) featurization of this config's part; returns the store folder."""
    if not cfg.out:
        raise ValueError("featurize needs --out DIR")
    out = Path(cfg.out)
    teacher = Teacher.load(cfg.teacher, max_seq_length=cfg.max_seq_length)
    ident = identity(cfg, teacher)
    pooling, normalize = ("token-mean", False) if cfg.target == "token-mean" else (None, None)
    stats = LineStats()
    mine: list[int] = []
    computed = skipped = copied = sentences = 0
    sources: list[Path] = []
    total = None
    start = time.perf_counter()
    bar = tqdm(total=cfg.max_sentences, unit="sent", desc=f"featurize part {cfg.part}/{cfg.num_parts}")
    with bar:
        for index, texts in enumerate(_chunks(iter_sentences(corpus_spec(cfg), stats), cfg.shard_size)):
            if index == 0:  # claimed once the corpus reads: a bad --corpus leaves no store behind
                store.claim(out, ident)
                sources = store.donors(out, ident)
                if sources:
                    logger.info(
                        "copying shards with the same sentences from %s", ", ".join(map(str, sources))
                    )
            total = index + 1
            if index % cfg.num_parts != cfg.part:
                continue
            mine.append(index)
            sentences += len(texts)
            problem = store.shard_problem(out, index, texts)
            if problem is None:
                skipped += 1
                bar.update(len(texts))
                continue
            if problem != "no record":
                logger.warning("shard %d is incomplete or corrupt (%s): recomputing it", index, problem)
            if any(store.copy_shard(d, out, index, texts) for d in sources):
                copied += 1
                bar.update(len(texts))
                continue
            emb = teacher.encode(
                texts, batch_size=cfg.batch_size, prompt=cfg.prompt, pooling=pooling, normalize=normalize
            )
            store.write_shard(out, index, texts, emb)
            computed += 1
            bar.update(len(texts))
    if total is None:
        raise ValueError(f"corpus {cfg.corpus} gave no sentences ({stats.summary()})")
    seconds = time.perf_counter() - start
    if removed := store.remove_temps(out, mine):
        logger.info("removed %d temp file(s) an interrupted run left", removed)
    _write_manifest(out, cfg, ident, mine, total, sentences, stats, seconds)
    logger.info(
        "featurized %d sentences in %d shards (%d computed, %d already complete, %d copied from a "
        "store beside it) in %.0f s; %s",
        sentences,
        len(mine),
        computed,
        skipped,
        copied,
        seconds,
        stats.summary(),
    )
    return out


def _write_manifest(
    out: Path,
    cfg: FeaturizeConfig,
    ident: dict[str, Any],
    shards: list[int],
    total_shards: int,
    sentences: int,
    stats: LineStats,
    seconds: float,
    stage: str = "featurize",
    inputs: list[manifest.Input] | None = None,
) -> None:
    files = [out / store.IDENTITY]
    for i in shards:
        files += [out / f"{store.shard_name(i)}{s}" for s in (".jsonl", ".npy", ".json")]
    if inputs is None:
        is_file = not cfg.corpus.startswith(HF_PREFIX)
        inputs = [manifest.Input.of(cfg.corpus)] if is_file else [manifest.Input(cfg.corpus)]
    manifest.write(
        out,
        stage,
        to_dict(cfg),
        config_hash(cfg),
        inputs,
        files,
        extra={
            "identity": ident,
            "shards": shards,
            "total_shards": total_shards,
            "num_parts": cfg.num_parts,
            "part": cfg.part,
            "counts": {"sentences": sentences, "read": stats.read, "skipped": stats.skipped},
            "seconds": round(seconds, 3),
        },
    )


def merge_parts(parts: list[str | Path], out: str | Path) -> Path:
    """Join the stores of all parts of one featurize job into one store (files are copied)."""
    if not parts:
        raise ValueError("merge-features needs the part folders to merge")
    dest = Path(out)
    metas = [manifest.read(p) for p in parts]
    for p, m in zip(parts, metas, strict=True):
        if m.get("stage") != "featurize":
            raise store.StoreError(f"{p} is not a featurize part (stage {m.get('stage')!r})")
        problems = manifest.verify(p)
        if problems:
            raise store.StoreError(f"{p}: {problems[0]}; rerun that part to repair it")
    first = metas[0]
    for p, m in zip(parts, metas, strict=True):
        if m["identity"] != first["identity"]:
            raise store.StoreError(f"{p} was made with other settings than {parts[0]}; refusing to mix")
        if m["num_parts"] != first["num_parts"] or m["total_shards"] != first["total_shards"]:
            raise store.StoreError(f"{p} belongs to another split (num_parts/total shards differ)")
    seen = sorted(m["part"] for m in metas)
    if seen != list(range(first["num_parts"])):
        raise store.StoreError(f"parts {seen} given; need each of 0..{first['num_parts'] - 1} exactly once")
    owner = {int(i): Path(p) for p, m in zip(parts, metas, strict=True) for i in m["shards"]}
    if sorted(owner) != list(range(first["total_shards"])):
        raise store.StoreError("the parts do not cover every shard exactly once")
    store.claim(dest, first["identity"])
    sentences = 0
    for i in range(first["total_shards"]):
        name = store.shard_name(i)
        for suffix in (".jsonl", ".npy", ".json"):
            src = owner[i] / f"{name}{suffix}"
            if src.resolve() != (dest / f"{name}{suffix}").resolve():
                shutil.copy2(src, dest / f"{name}{suffix}")
        record = store.ShardRecord.read(dest, i)
        sentences += record.count if record else 0
    cfg = FeaturizeConfig(**{**first["config"], "num_parts": 1, "part": 0, "out": str(dest)})
    stats = LineStats()
    for m in metas:
        stats.read = max(stats.read, m["counts"]["read"])
        stats.skipped = m["counts"]["skipped"]
    shards = list(range(first["total_shards"]))
    inputs = [manifest.Input.of(p) for p in parts]
    _write_manifest(
        dest, cfg, first["identity"], shards, len(shards), sentences, stats, 0.0, "featurize", inputs
    )
    return dest
