"""The `export` stage: a model2vec folder -> a compact int8/float16/float32 model2vec folder.

    OUT/model.safetensors   `embeddings` (int8: one global symmetric scale, chosen to minimise the
                            table's squared error, recorded in config.json, not needed to load),
                            plus `mapping` and `weights` after vocabulary quantization
    OUT/tokenizer.json      the source model's tokenizer
    OUT/config.json         the source's config, `normalize: true`, and `potstill.export`
    OUT/modules.json        sentence-transformers' StaticEmbedding + Normalize
    OUT/0_StaticEmbedding/  int8 without `weights` only: model.safetensors (the same int8
                            `embeddings` and the scale as per-token `weights`) and tokenizer.json.
                            sentence-transformers folds them to float32 (it cannot hold int8);
                            model2vec reads the root files, so its fast path (no weights) is kept.
    OUT/manifest.json       config, input, the files above, rows, dims, dtype, bytes, check
    OUT/README.md           the model card (potstill.card); not in the manifest: eval rewrites it

The folder is written to OUT.partial and reloaded there; only a folder that passes the reload
check replaces OUT. One that fails is kept at OUT.rejected, and OUT stays as it was.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from potstill import manifest
from potstill.config import ExportConfig, config_hash, to_dict

if TYPE_CHECKING:
    from model2vec import StaticModel
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json", "modules.json")
ST_FOLDER = "0_StaticEmbedding"  # sentence-transformers' copy of an int8 table (model2vec's third layout)
_SCALE_SAMPLE = 1 << 20  # table entries the int8 scale search looks at
_SPECIAL = re.compile(r"^(\[.*\]|<.*>)$")  # [CLS], [unused3], <s>, <pad>: not words


class ExportError(ValueError):
    """An export that cannot be made or does not reload faithfully; the message says what to do."""


@dataclass(frozen=True)
class Check:
    """The reload check: per-sentence cosine between the source and the exported model."""

    sentences: int
    mean_cosine: float
    min_cosine: float

    def passed(self, cfg: ExportConfig) -> bool:
        """Both thresholds met."""
        return self.mean_cosine >= cfg.min_mean_cosine and self.min_cosine >= cfg.min_cosine

    def to_dict(self) -> dict[str, Any]:
        return {"sentences": self.sentences, "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine}


def load_source(folder: Path) -> StaticModel:
    """The model to export, from a local folder only (model2vec would try the hub for a bad path)."""
    from model2vec import StaticModel

    if not folder.is_dir():
        raise ExportError(
            f"model folder {folder} does not exist; pass a model2vec folder "
            "(potstill train's OUT/final, potstill distill's OUT, or any model2vec model)"
        )
    try:
        return StaticModel.from_pretrained(folder)
    except Exception as e:  # model2vec raises ValueError, safetensors and tokenizers their own
        raise ExportError(f"{folder} is not a model2vec folder ({type(e).__name__}: {e})") from e


def int8_scale(table: np.ndarray, seed: int = 0) -> float:
    """The global symmetric int8 scale with the least squared error over (a sample of) the table.

    model2vec's own int8 scale is max|x| / 127: one outlier entry then coarsens every row. Clipping
    the few entries above the best threshold costs less than that (trained tables have heavy tails).
    """
    flat = np.abs(np.asarray(table, dtype=np.float32).ravel())
    if flat.size > _SCALE_SAMPLE:
        flat = np.random.default_rng(seed).choice(flat, _SCALE_SAMPLE, replace=False)
    top = float(flat.max())
    if top == 0.0:
        return 1.0  # an all-zero table: any scale is exact
    low = max(float(np.percentile(flat, 99.0)), top / 64)
    best, best_err = top / 127, np.inf
    for clip in np.geomspace(low, top, 48):
        scale = float(clip) / 127
        err = float(np.square(np.minimum(np.round(flat / scale), 127) * scale - flat).mean())
        if err < best_err:
            best, best_err = scale, err
    return best


def quantize_int8(table: np.ndarray, scale: float) -> np.ndarray:
    """`table / scale`, rounded and clipped to [-127, 127]."""
    return np.clip(np.round(np.asarray(table, dtype=np.float32) / scale), -127, 127).astype(np.int8)


@dataclass(frozen=True)
class Arrays:
    """What the export saves: the cast table, model2vec's optional `weights` and `mapping`, the int8 scale."""

    embeddings: np.ndarray
    weights: np.ndarray | None
    mapping: np.ndarray | None
    scale: float | None  # int8 only


def export_arrays(model: StaticModel, cfg: ExportConfig) -> Arrays:
    """`embeddings`, `weights` and `mapping` as they will be saved: clustered, then cast."""
    embeddings, weights, mapping = model.embedding, model.weights, model.token_mapping
    if cfg.vocab_quantize is not None:
        from model2vec.vocabulary_quantization import quantize_vocabulary

        rows = int(embeddings.shape[0])
        if mapping is not None:
            raise ExportError(
                f"{cfg.model} is already vocabulary-quantized ({rows} rows); drop --vocab-quantize"
            )
        if cfg.vocab_quantize >= rows:
            raise ExportError(
                f"vocab_quantize={cfg.vocab_quantize} must be below the model's {rows} rows; use K < {rows}"
            )
        table = np.asarray(embeddings, dtype=np.float32)  # KMeans on float rows, whatever the source dtype
        embeddings, mapping, weights = quantize_vocabulary(cfg.vocab_quantize, weights, table)
        weights = np.asarray(weights, dtype=np.float32)
        mapping = np.asarray(mapping, dtype=np.int64)
    table = np.asarray(embeddings)
    if cfg.dtype == "int8":
        if table.dtype == np.int8:  # already int8: its scale is unknown and irrelevant (normalize)
            return Arrays(table, weights, mapping, 1.0)
        scale = int8_scale(table)
        return Arrays(quantize_int8(table, scale), weights, mapping, scale)
    return Arrays(table.astype(np.dtype(cfg.dtype)), weights, mapping, None)


def write_st_folder(folder: Path, arrays: Arrays) -> list[Path]:
    """`folder/0_StaticEmbedding/` for sentence-transformers, and modules.json pointing at it."""
    from safetensors.numpy import save_file

    st = folder / ST_FOLDER
    st.mkdir()
    rows = arrays.embeddings.shape[0]
    scale = np.full(rows, arrays.scale or 1.0, dtype=np.float32)
    save_file({"embeddings": arrays.embeddings, "weights": scale}, str(st / "model.safetensors"))
    shutil.copyfile(folder / "tokenizer.json", st / "tokenizer.json")
    modules_path = folder / "modules.json"
    modules = json.loads(modules_path.read_text())
    for module in modules:
        if module["type"].endswith("StaticEmbedding"):
            module["path"] = ST_FOLDER
    modules_path.write_text(json.dumps(modules, indent=4))
    return [st / "model.safetensors", st / "tokenizer.json"]


def export_config(model: StaticModel, cfg: ExportConfig, arrays: Arrays, st_folder: bool) -> dict[str, Any]:
    """The source config with `normalize: true` and what this export did under `potstill.export`."""
    config: dict[str, Any] = dict(model.config)
    config["normalize"] = True  # cancels int8's scale; cosine-equal for every dtype
    block = dict(config.get("potstill") or {})
    block["export"] = {
        "dtype": cfg.dtype,
        "vocab_quantize": cfg.vocab_quantize,
        "int8_scale": arrays.scale,
        "sentence_transformers_folder": ST_FOLDER if st_folder else None,
    }
    config["potstill"] = block
    return config


def _texts(source: str) -> Iterator[str]:
    """Sentences of a featurize store folder, or of a text file through the corpus readers."""
    path = Path(source)
    if path.is_dir():
        from potstill.distill import store

        for texts, _ in store.iter_store(path, verify=False):
            yield from texts
        return
    from potstill.distill.corpus import CorpusSpec, iter_sentences
    from potstill.textio import LineStats

    yield from iter_sentences(CorpusSpec(source), LineStats())


def synthetic_sentences(tokenizer: Tokenizer, n: int, seed: int = 0) -> Iterator[str]:
    """Seeded random runs of 5-30 vocabulary words (no special tokens), joined by spaces."""
    special = {tok.content for tok in tokenizer.get_added_tokens_decoder().values() if tok.special}
    words = sorted(
        {t.removeprefix("##") for t in tokenizer.get_vocab() if t not in special and not _SPECIAL.match(t)}
        - {""}
    )
    if not words:
        raise ExportError(
            "the tokenizer has no ordinary tokens to build check sentences from; pass --check-texts"
        )
    rng = np.random.default_rng(seed)
    for _ in range(n):
        picks = rng.integers(0, len(words), size=int(rng.integers(5, 31)))
        yield " ".join(words[i] for i in picks)


def check_sentences(model: StaticModel, cfg: ExportConfig) -> list[str]:
    """Up to `check_sentences` sentences that the source model turns into at least one token."""
    # Synthetic sentences: a few spares, as a run of rare pieces may tokenize to nothing.
    pool = (
        _texts(cfg.check_texts)
        if cfg.check_texts
        else synthetic_sentences(model.tokenizer, 2 * cfg.check_sentences)
    )
    kept: list[str] = []
    for text in pool:
        if model.tokenize([text])[0]:  # a sentence of no tokens is a zero vector in both models
            kept.append(text)
            if len(kept) == cfg.check_sentences:
                break
    if not kept:
        where = cfg.check_texts or "the vocabulary"
        raise ExportError(f"no sentence from {where} has a token the model knows; pass other --check-texts")
    return kept


def reload_check(source: StaticModel, folder: Path, sentences: list[str]) -> Check:
    """Reload `folder` with model2vec and compare it with `source`, sentence by sentence."""
    from model2vec import StaticModel

    reloaded = StaticModel.from_pretrained(folder)
    a = source.encode(sentences, normalize=True, use_multiprocessing=False).astype(np.float64)
    b = reloaded.encode(sentences, use_multiprocessing=False).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = (a * b).sum(axis=1) / np.maximum(norms, 1e-300)  # a zero vector scores 0: a failure
    return Check(len(sentences), float(cosine.mean()), float(cosine.min()))


def _swap_in(folder: Path, dest: Path) -> None:
    """Rename `folder` to `dest`, replacing what is there (moved aside, then removed)."""
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(folder, dest)
    shutil.rmtree(old, ignore_errors=True)


def _check_out(cfg: ExportConfig) -> Path:
    """OUT, refused when it is the source or a non-empty folder that no export made."""
    if not cfg.model or not cfg.out:
        raise ExportError("export needs a MODEL_DIR and --out DIR")
    out = Path(cfg.out)
    if out.resolve() == Path(cfg.model).resolve():
        raise ExportError(f"--out {out} is the model folder itself; pick another --out")
    if out.is_file():
        raise ExportError(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()):
        try:
            stage = manifest.read(out).get("stage")
        except manifest.ManifestError:
            stage = None
        if stage != "export":
            raise ExportError(
                f"--out {out} holds files that potstill export did not write; pick another --out or remove it"
            )
    return out


def push(folder: Path, repo_id: str, *, private: bool) -> None:
    """Upload `folder` to the hub repo `repo_id` (created when missing)."""
    import huggingface_hub

    try:
        api = huggingface_hub.HfApi()
        api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder))
    except Exception as e:  # offline, no token, no rights, HTTP errors: all mean "not uploaded"
        detail = str(e).splitlines()[0] if str(e) else "no detail"
        raise ExportError(
            f"could not upload to the hub repo {repo_id!r} ({type(e).__name__}: {detail}); the local folder "
            f"{folder} is complete: upload it later with `hf upload {repo_id} {folder}`"
        ) from e


def export(cfg: ExportConfig) -> Path:
    """Export `cfg.model` to `cfg.out`; returns OUT.

    Every dtype is written with `normalize: true`: int8 needs it (model2vec does not save the
    int8 scale, so raw vectors would be off by 1/scale), and the others then give the same unit
    vectors. Raises ExportError when the reload check falls below the thresholds (the folder is
    kept at OUT.rejected) or when the upload fails (OUT is then complete).
    """
    from model2vec.persistence import save_pretrained

    from potstill.card import write_card

    start = time.perf_counter()
    out = _check_out(cfg)
    source = load_source(Path(cfg.model))
    sentences = check_sentences(source, cfg)  # a bad --check-texts fails before anything is written
    arrays = export_arrays(source, cfg)
    embeddings = arrays.embeddings
    # int8 without `weights` is the one layout sentence-transformers cannot read from the root files
    st_folder = cfg.dtype == "int8" and arrays.weights is None and cfg.sentence_transformers
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted export
    save_pretrained(
        partial,
        embeddings,
        source.tokenizer,
        export_config(source, cfg, arrays, st_folder),  # type: ignore[arg-type]  # a dict with our extra keys
        create_model_card=False,
        weights=arrays.weights,
        mapping=arrays.mapping,
    )
    outputs = [partial / name for name in MODEL_FILES]
    if st_folder:
        outputs += write_st_folder(partial, arrays)
    check = reload_check(source, partial, sentences)
    rows, dims = embeddings.shape  # rows: K after vocabulary quantization
    size = (partial / "model.safetensors").stat().st_size
    logger.info(
        "export: %d x %d %s (%d tokens), %.2f MB; reload check on %d sentences: mean cosine %.5f, min %.5f",
        rows,
        dims,
        cfg.dtype,
        len(source.tokens),
        size / 1e6,
        check.sentences,
        check.mean_cosine,
        check.min_cosine,
    )
    if not check.passed(cfg):
        rejected = out.with_name(out.name + ".rejected")
        _swap_in(partial, rejected)
        raise ExportError(
            f"the exported model does not match {cfg.model}: mean cosine {check.mean_cosine:.5f} "
            f"(needs >= {cfg.min_mean_cosine}), min cosine {check.min_cosine:.5f} (needs >= {cfg.min_cosine}) "
            f"on {check.sentences} sentences; the rejected folder is {rejected}, {out} is unchanged. "
            "Use a wider dtype or more --vocab-quantize clusters, or lower --set min_mean_cosine / min_cosine"
        )
    manifest.write(
        partial,
        "export",
        to_dict(cfg),
        config_hash(cfg),
        [manifest.Input.of(cfg.model)],
        outputs,
        extra={
            "rows": int(rows),
            "dims": int(dims),
            "tokens": len(source.tokens),
            "dtype": cfg.dtype,
            "vocab_quantize": cfg.vocab_quantize,
            "bytes": size,
            "folder_bytes": sum(p.stat().st_size for p in outputs),
            "check": check.to_dict(),
            "seconds": round(time.perf_counter() - start, 1),
        },
    )
    write_card(partial, name=cfg.name or out.name, recipe=cfg.recipe)
    _swap_in(partial, out)
    if cfg.push_to_hub:
        push(out, cfg.push_to_hub, private=cfg.private)
        logger.info("export: uploaded %s to the hub repo %s", out, cfg.push_to_hub)
    return out
