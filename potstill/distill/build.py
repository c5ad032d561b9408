"""Distill: teacher (+ corpus) -> vocabulary -> token embeddings -> PCA -> SIF -> static model.

The output folder is a model2vec model written through model2vec's own `StaticModel` API, so
`StaticModel.from_pretrained(out)` loads it, plus `pca.safetensors` (the token PCA) and the
stage manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from model2vec import StaticModel
from safetensors.numpy import save_file

from potstill import manifest
from potstill.config import config_hash, to_dict
from potstill.distill import contexts, vocab
from potstill.distill.config import DistillConfig
from potstill.distill.pca import fit_pca
from potstill.distill.tokens import embed_tokens
from potstill.distill.weighting import corpus_probabilities, sif_weights, zipf_probabilities
from potstill.features import store
from potstill.features.corpus import CorpusSpec, iter_sentences
from potstill.teacher.teacher import Teacher
from potstill.textio import LineStats

logger = logging.getLogger(__name__)


def corpus_texts(cfg: DistillConfig, teacher: Teacher) -> Callable[[], Iterator[str]] | None:
    """A re-iterable source of corpus texts (features store or corpus file), or None."""
    limit = cfg.max_corpus_sentences
    if cfg.features:
        folder = Path(cfg.features)
        ident = store.read_identity(folder)
        if ident is None:
            raise store.StoreError(f"{folder} is not a featurized store (no {store.IDENTITY})")
        sha = ident.get("teacher_weights_sha256")
        if sha is not None and sha != teacher.weights_sha256:
            raise store.StoreError(
                f"{folder} was featurized with another teacher (weights sha256 {sha[:12]}...) than "
                f"{teacher.name!r} ({teacher.weights_sha256[:12]}...); featurize with this teacher"
            )

        def from_store() -> Iterator[str]:
            n = 0
            for texts, _ in store.iter_store(folder, verify=False):
                for t in texts:
                    if limit is not None and n >= limit:
                        return
                    n += 1
                    yield t

        return from_store
    if cfg.corpus:
        spec = CorpusSpec(source=cfg.corpus, max_sentences=limit)
        return lambda: iter_sentences(spec, LineStats())
    return None


def build_vocabulary(
    cfg: DistillConfig, teacher: Teacher, texts: Callable[[], Iterator[str]] | None
) -> tuple[list[str], int]:
    """Teacher wordpieces (cleaned), then user or corpus words, without duplicates; returns the
    vocabulary and how many of its first entries are teacher wordpieces."""
    base = vocab.teacher_tokens(teacher.tokenizer, cfg.remove_pattern or None)
    known = set(base)
    if cfg.vocab:
        extra = []
        for raw in vocab.read_vocab_file(cfg.vocab):
            words = vocab.words_of(teacher.tokenizer, raw)
            if len(words) != 1:
                logger.warning("vocabulary entry %r is not one word for the tokenizer: skipped", raw)
            elif words[0] not in known:
                known.add(words[0])
                extra.append(words[0])
        return base + extra, len(base)
    if cfg.vocab_size > 0:
        if texts is None:
            raise ValueError("vocab_size > 0 needs corpus words: pass --features DIR or --corpus FILE")
        counts = vocab.count_words(teacher.tokenizer, texts())
        extra = vocab.corpus_words(teacher.tokenizer, counts, known, cfg.vocab_size, cfg.min_frequency)
        logger.info("added %d corpus words (of %d distinct)", len(extra), len(counts))
        return base + extra, len(base)
    return base, len(base)


def distill(cfg: DistillConfig) -> Path:
    """Run the stage; returns the model folder."""
    if not cfg.out:
        raise ValueError("distill needs --out DIR")
    start = time.perf_counter()
    teacher = Teacher.load(cfg.teacher)
    if cfg.dims > teacher.dim:
        raise ValueError(
            f"dims={cfg.dims} exceeds the teacher width {teacher.dim}; use dims <= {teacher.dim}"
        )
    texts = corpus_texts(cfg, teacher)
    tokens, n_teacher = build_vocabulary(cfg, teacher, texts)
    if cfg.dims > len(tokens):
        raise ValueError(
            f"dims={cfg.dims} exceeds the vocabulary size {len(tokens)}; use dims <= {len(tokens)}"
        )
    tokenizer = vocab.static_tokenizer(teacher.tokenizer, tokens)
    table = embed_tokens(teacher, tokens, pooling=cfg.pooling, batch_size=cfg.batch_size)
    source = cfg.tokens if cfg.tokens != "auto" else ("context" if texts is not None else "isolated")
    seen: dict[str, int] = {}
    if source == "context":
        if texts is None:
            raise ValueError("tokens=context needs corpus sentences: pass --features DIR or --corpus FILE")
        ctx = contexts.collect(teacher, tokens, n_teacher, texts(), cfg.context_sentences)
        table = ctx.vectors(table)
        seen = {"context_sentences": ctx.sentences, "context_rows_seen": int((ctx.counts > 0).sum())}
    pca = fit_pca(table, cfg.dims)
    vectors = pca.transform(table)
    sif = cfg.sif if cfg.sif != "auto" else ("corpus" if texts is not None else "zipf")
    if sif == "corpus":
        if texts is None:
            raise ValueError("sif=corpus needs --features DIR or --corpus FILE")
        probabilities = corpus_probabilities(tokenizer, texts())
    else:
        probabilities = zipf_probabilities(len(tokens))
    if sif != "none":
        vectors = vectors * sif_weights(probabilities, cfg.sif_coefficient)[:, None]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "model2vec",
        "architectures": ["StaticModel"],
        "tokenizer_name": teacher.name,
        "apply_pca": cfg.dims,
        "sif_coefficient": cfg.sif_coefficient if sif != "none" else None,
        "hidden_dim": cfg.dims,
        "seq_length": 1000000,
        "pooling": cfg.pooling,
        "potstill": {"stage": "distill", "sif": sif, "tokens": source, "teacher_pooling": teacher.pooling},
    }
    model = StaticModel(
        vectors=vectors.astype(np.float32),
        tokenizer=tokenizer,
        config=config,
        normalize=True,
        base_model_name=teacher.name,
    )
    model.save_pretrained(out)
    save_file({"mean": pca.mean, "components": pca.components}, str(out / "pca.safetensors"))
    seconds = time.perf_counter() - start
    files = [p for p in out.iterdir() if p.is_file() and p.name != manifest.MANIFEST]
    inputs = [manifest.Input(teacher.name)]
    if cfg.features or cfg.corpus:
        inputs.append(manifest.Input.of(cfg.features or cfg.corpus or ""))
    manifest.write(
        out,
        "distill",
        to_dict(cfg),
        config_hash(cfg),
        inputs,
        files,
        extra={
            "teacher": {"name": teacher.name, "weights_sha256": teacher.weights_sha256},
            "rows": len(tokens),
            "teacher_tokens": n_teacher,
            "dims": cfg.dims,
            "sif": sif,
            "tokens": source,
            **seen,
            "explained_variance": float(pca.explained_variance_ratio.sum()),
            "seconds": round(seconds, 1),
        },
    )
    logger.info("distilled %d x %d in %.0f s -> %s", len(tokens), cfg.dims, seconds, out)
    return out
