"""Featurize: embed a corpus with the teacher into a resumable, mergeable shard store.

The corpus stream (`corpus.iter_sentences`) is cut into shards of `shard_size` sentences; shard k
belongs to part `k % num_parts`. A run computes the shards of its part that are not already
complete and sound, so rerunning the same command after any interruption (Ctrl-C, SIGKILL,
power loss) finishes the store with exactly the sentences of an uninterrupted run. A store grows:
a shard that a store beside it (same settings, another `max_sentences`) holds with the same
sentences is copied, not computed, so 50,000 sentences then 100,000 cost 100,000 encodes.
`merge_parts` joins the stores of all parts into the store a single run would have written.
Under `mlx.launch -n N` the N ranks are the N parts of one store in one folder, and rank 0 writes
its manifest once all have finished: no merge step.
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

from potstill import distributed, manifest
from potstill.config import ConfigError, config_hash, to_dict
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
    """Run (or resume) featurization of this config's part; returns the store folder.

    Under `mlx.launch -n N` rank r computes part r of N (the `--part r --num-parts N` shards) of
    one store in `out`; once every rank is done, rank 0 checks every shard and writes the store's
    manifest, so the folder is exactly the store one process writes."""
    if not cfg.out:
        raise ValueError("featurize needs --out DIR")
    w = distributed.world()
    if w.size > 1 and cfg.num_parts != 1:
        raise ConfigError(f"under mlx.launch the {w.size} ranks are the parts; leave out --num-parts/--part")
    part, parts = (w.rank, w.size) if w.size > 1 else (cfg.part, cfg.num_parts)
    out = Path(cfg.out)
    teacher = Teacher.load(cfg.teacher, max_seq_length=cfg.max_seq_length)
    ident = identity(cfg, teacher)
    talk = time.perf_counter()
    w.agree(ident, "store identity (teacher weights, corpus and settings)")
    talk = time.perf_counter() - talk
    pooling, normalize = ("token-mean", False) if cfg.target == "token-mean" else (None, None)
    stats = LineStats()
    mine: list[int] = []
    others: dict[int, tuple[int, str]] = {}  # rank 0: the other ranks' shards, to check them
    computed = skipped = copied = sentences = 0
    sources: list[Path] = []
    total = None
    start = time.perf_counter()
    name = f"part {part}/{parts}"
    size = None if cfg.max_sentences is None else -(-cfg.max_sentences // parts)
    bar = tqdm(total=size, unit="sent", desc=f"featurize {name}")
    with bar:
        for index, texts in enumerate(_chunks(iter_sentences(corpus_spec(cfg), stats), cfg.shard_size)):
            if index == 0:  # claimed once the corpus reads: a bad --corpus leaves no store behind
                if w.leader:
                    store.claim(out, ident)
                w.barrier()  # the others claim a folder rank 0 has made a store
                if not w.leader:
                    store.claim(out, ident)
                sources = store.donors(out, ident)
                if sources:
                    logger.info(
                        "copying shards with the same sentences from %s", ", ".join(map(str, sources))
                    )
            total = index + 1
            if index % parts != part:
                if w.size > 1 and w.leader:
                    others[index] = store.texts_key(texts)
                continue
            mine.append(index)
            sentences += len(texts)
            key = store.texts_key(texts)
            problem = store.shard_problem(out, index, key)
            if problem is None:
                skipped += 1
                bar.update(len(texts))
                continue
            if problem != "no record":
                logger.warning("shard %d is incomplete or corrupt (%s): recomputing it", index, problem)
            if any(store.copy_shard(d, out, index, texts, key) for d in sources):
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
    logger.info(
        "%s: featurized %d sentences in %d shards (%d computed, %d already complete, %d copied from "
        "a store beside it) in %.0f s; %s",
        name,
        sentences,
        len(mine),
        computed,
        skipped,
        copied,
        seconds,
        stats.summary(),
    )
    if w.size == 1:
        _write_manifest(out, cfg, ident, mine, total, sentences, stats, seconds)
        return out
    waited = time.perf_counter()
    w.barrier()  # every rank has written its shards
    waited = time.perf_counter() - waited
    if w.leader:
        checked = time.perf_counter()
        shards, sentences = _check_others(out, mine, sentences, others, parts)
        ranks = {
            "ranks": w.size,
            "agree_seconds": round(talk, 4),  # the identity exchange
            "wait_seconds": round(waited, 3),  # rank 0 waiting for the slowest rank
            "check_seconds": round(time.perf_counter() - checked, 3),  # the other ranks' shards
        }
        _write_manifest(out, cfg, ident, shards, total, sentences, stats, seconds, ranks=ranks)
    w.barrier()  # nobody goes on before the manifest is there
    return out


def _check_others(
    out: Path, mine: list[int], sentences: int, others: dict[int, tuple[int, str]], parts: int
) -> tuple[list[int], int]:
    """Rank 0, after every rank finished: all shards, complete and holding the corpus's texts."""
    bad = []
    for index, key in sorted(others.items()):
        if (problem := store.shard_problem(out, index, key)) is not None:
            bad.append(f"{store.shard_name(index)} (rank {index % parts}: {problem})")
    if bad:
        raise store.StoreError(
            f"{out} on rank 0 lacks {len(bad)} shard(s) the other ranks wrote: {', '.join(bad[:3])}. "
            "Give every rank the same folder (one machine, or a shared filesystem), or copy the "
            "other machines' shards into it, then run the same command again: complete shards are kept."
        )
    return sorted([*mine, *others]), sentences + sum(k[0] for k in others.values())


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
    ranks: dict[str, Any] | None = None,
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
            **({"distributed": ranks} if ranks else {}),
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
