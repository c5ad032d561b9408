"""The fidelity screen: a quantized teacher against its float original on the same sentences.

On N sentences: mean and minimum cosine between each sentence's two embeddings, and top-1 and
top-k neighbour retention (for each sentence, the share of its k nearest neighbours among the N,
by cosine under the float embeddings, that are still among its k nearest under the quantized
ones). Given a BEIR task folder, NDCG@10 of both teachers through mteb's own retrieval evaluator
(`potstill.eval`), on the full corpus or on a subset: every relevant document plus
`retrieval_docs` others drawn with a seed (SciFact's 5,183 documents cost ~10 min per teacher on a
2-core CPU). Quantization schemes are in `schemes.py`, the per-layer map in `layer_map.py`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from potstill.eval import mteb_tasks
from potstill.eval.config import INSTALL
from potstill.eval.run import evaluate_task
from potstill.eval.tasks import TaskData, TaskFolderError, TaskType, find_tasks, load_task
from potstill.features.corpus import CorpusSpec, iter_sentences
from potstill.teacher.teacher import Teacher
from potstill.textio import LineStats
from potstill.vectors import normalise

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fidelity:
    """How closely candidate embeddings follow reference embeddings of the same sentences."""

    sentences: int
    mean_cos: float
    min_cos: float
    top1: float  # share of sentences whose nearest neighbour is unchanged
    top10: float  # mean share of the 10 nearest neighbours kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unit(emb: np.ndarray) -> np.ndarray:
    return normalise(np.asarray(emb, dtype=np.float32))


def neighbours(emb: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices (N, k) of each row's k nearest other rows by cosine, nearest first."""
    n = len(emb)
    if not 0 < k < n:
        raise ValueError(f"k={k} neighbours need more than k sentences (got {n}); screen more sentences")
    unit = _unit(emb)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        sim = unit[start : start + chunk] @ unit.T
        rows = np.arange(len(sim))
        sim[rows, start + rows] = -np.inf  # a sentence is not its own neighbour
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def retention(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean share of each row's reference neighbour set found in its candidate set."""
    k = reference.shape[1]
    kept = [len(set(a).intersection(b)) for a, b in zip(reference.tolist(), candidate.tolist(), strict=True)]
    return float(np.mean(kept)) / k


def fidelity(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> Fidelity:
    """Cosines and neighbour retention of `candidate` against `reference` (same rows)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"embeddings differ in shape: {reference.shape} vs {candidate.shape}")
    cos = (_unit(reference) * _unit(candidate)).sum(axis=1)
    ref_nn, cand_nn = neighbours(reference, k), neighbours(candidate, k)
    return Fidelity(
        sentences=len(reference),
        mean_cos=float(cos.mean()),
        min_cos=float(cos.min()),
        top1=float((ref_nn[:, 0] == cand_nn[:, 0]).mean()),
        top10=retention(ref_nn, cand_nn),
    )


def read_sentences(corpus: str, n: int) -> list[str]:
    """The first `n` distinct non-empty texts of a corpus (any reader `featurize` takes)."""

    texts = list(iter_sentences(CorpusSpec(source=corpus, max_sentences=n), LineStats()))
    if len(texts) < 11:
        raise ValueError(
            f"corpus {corpus} gave {len(texts)} texts; the screen needs at least 11 (top-10 neighbours)"
        )
    if len(texts) < n:
        logger.warning("corpus %s holds %d texts, fewer than the %d asked for", corpus, len(texts), n)
    return texts


@dataclass
class Encoded:
    """Embeddings of the screen's sentences and the speed they were made at."""

    emb: np.ndarray
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def encode_timed(teacher: Teacher, texts: Sequence[str], batch_size: int = 64) -> Encoded:
    """Embed texts and time it; tokens counted after truncation."""
    tokens = sum(min(len(ids), teacher.max_seq_length) for ids in teacher.tokenize(texts))
    start = time.perf_counter()
    emb = teacher.encode(texts, batch_size=batch_size)
    return Encoded(emb, tokens, time.perf_counter() - start)


# --------------------------------------------------------------------------------- retrieval
def retrieval_task(
    folder: str | Path, docs: int | None = None, seed: int = 0, split: str = "test"
) -> TaskData:
    """A BEIR task folder's split; with `docs`, its corpus cut to every relevant document plus
    `docs` others drawn with `seed` (queries and qrels unchanged)."""

    specs = find_tasks(folder)
    if len(specs) != 1 or specs[0].type is not TaskType.RETRIEVAL:
        raise TaskFolderError(f"--retrieval {folder} should be one Retrieval task folder (BEIR layout)")
    data = load_task(specs[0], split)
    if docs is None:
        return data
    if docs < 0:
        raise ValueError(f"retrieval_docs={docs} must be >= 0 (or unset: the whole corpus)")
    assert data.qrels is not None
    corpus = data.tables["corpus"]
    relevant = {d for rel in data.qrels.values() for d in rel}
    others = [i for i, d in enumerate(corpus["id"]) if d not in relevant]
    keep = set(random.Random(seed).sample(others, min(docs, len(others))))
    rows = [i for i, d in enumerate(corpus["id"]) if d in relevant or i in keep]
    data.tables["corpus"] = {col: [vals[i] for i in rows] for col, vals in corpus.items()}
    return data


def ndcg_at_10(teacher: Teacher, data: TaskData, batch_size: int = 64, label: str = "teacher") -> float:
    """NDCG@10 of a teacher on a retrieval split, by mteb's own evaluator (needs the eval extra)."""
    try:
        import mteb  # noqa: F401  # lazy: the optional eval extra
    except ImportError as e:
        raise ValueError(f"NDCG@10 needs mteb ({e}); install the eval extra: {INSTALL}") from e
    # lazy: potstill.eval.models subclasses mteb's encoder (the optional eval extra)
    from potstill.eval.models import TeacherEncoder

    mteb_tasks.quiet_mteb()
    encoder = TeacherEncoder(label, teacher, batch_size)
    return evaluate_task(encoder, data.spec, mteb_tasks.to_mteb(data), data.split).value


# ---------------------------------------------------------------------------------- the screen
@dataclass
class ScreenResult:
    """The screen of one quantized teacher against its float original."""

    fidelity: Fidelity
    tokens_per_s: dict[str, float]  # "float", "quantized"
    ndcg_at_10: dict[str, float] | None = None  # "float", "quantized"
    retrieval: dict[str, Any] | None = None  # task, documents, queries

    def to_dict(self) -> dict[str, Any]:
        return {
            "fidelity": self.fidelity.to_dict(),
            "tokens_per_s": self.tokens_per_s,
            "ndcg_at_10": self.ndcg_at_10,
            "retrieval": self.retrieval,
        }

    def lines(self) -> list[str]:
        """The result as aligned text lines."""
        f = self.fidelity
        out = [
            f"sentences: {f.sentences}",
            f"mean cos: {f.mean_cos:.5f}   min cos: {f.min_cos:.5f}",
            f"top-1 retention: {f.top1:.4f}   top-10 retention: {f.top10:.4f}",
            "tokens/s: float {float:.0f}, quantized {quantized:.0f}".format(**self.tokens_per_s),
        ]
        if self.ndcg_at_10 and self.retrieval:
            r = self.retrieval
            out.append(
                f"{r['task']} NDCG@10 ({r['documents']} documents, {r['queries']} queries): "
                f"float {100 * self.ndcg_at_10['float']:.2f}, quantized {100 * self.ndcg_at_10['quantized']:.2f}"
            )
        return out


def screen(
    float_teacher: Teacher,
    quantized: Teacher,
    texts: Sequence[str],
    *,
    retrieval: TaskData | None = None,
    batch_size: int = 64,
) -> ScreenResult:
    """Compare a quantized teacher with its float original on `texts` (and a retrieval task)."""
    ref = encode_timed(float_teacher, texts, batch_size)
    got = encode_timed(quantized, texts, batch_size)
    result = ScreenResult(
        fidelity(ref.emb, got.emb), {"float": ref.tokens_per_s, "quantized": got.tokens_per_s}
    )
    if retrieval is not None:
        result.ndcg_at_10 = {
            "float": ndcg_at_10(float_teacher, retrieval, batch_size, "float"),
            "quantized": ndcg_at_10(quantized, retrieval, batch_size, "quantized"),
        }
        result.retrieval = {
            "task": retrieval.spec.name,
            "documents": len(retrieval.tables["corpus"]["id"]),
            "queries": len(retrieval.tables["queries"]["id"]),
        }
    return result
