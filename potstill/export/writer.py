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
    OUT/README.md           the model card (potstill.export.card); not in the manifest: eval rewrites it

The folder is written to OUT.partial and reloaded there; only a folder that passes the reload
check replaces OUT. One that fails is kept at OUT.rejected, and OUT stays as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import huggingface_hub
from model2vec import StaticModel
from model2vec.persistence import save_pretrained

from potstill import manifest
from potstill.config import config_hash, to_dict
from potstill.export.card import write_card
from potstill.export.check import check_sentences, reload_check
from potstill.export.config import ExportConfig, ExportError
from potstill.export.tables import export_arrays, export_config, write_st_folder

logger = logging.getLogger(__name__)

MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json", "modules.json")


def load_source(folder: Path) -> StaticModel:
    """The model to export, from a local folder only (model2vec would try the hub for a bad path)."""
    if not folder.is_dir():
        raise ExportError(
            f"model folder {folder} does not exist; pass a model2vec folder "
            "(potstill train's OUT/final, potstill distill's OUT, or any model2vec model)"
        )
    try:
        return StaticModel.from_pretrained(folder)
    except Exception as e:  # model2vec raises ValueError, safetensors and tokenizers their own
        raise ExportError(f"{folder} is not a model2vec folder ({type(e).__name__}: {e})") from e


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
