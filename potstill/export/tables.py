"""The exported arrays: the table cast to the export dtype (int8 with its least-squares global
scale), model2vec's optional `weights` and `mapping`, the config.json, and the int8 copy that
sentence-transformers reads from 0_StaticEmbedding/."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from model2vec import StaticModel
from model2vec.vocabulary_quantization import quantize_vocabulary
from safetensors.numpy import save_file

from potstill.export.config import ExportConfig, ExportError

ST_FOLDER = "0_StaticEmbedding"  # sentence-transformers' copy of an int8 table (model2vec's third layout)
_SCALE_SAMPLE = 1 << 20  # table entries the int8 scale search looks at


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
