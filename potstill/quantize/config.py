"""`potstill quantize`'s settings: a quantized teacher, its fidelity screen, or its layer map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from potstill.config import DEFAULT_TEACHER, ConfigError, setting, settle
from potstill.quantize.schemes import Mode, SchemeName


@dataclass(frozen=True)
class QuantizeConfig:
    """`potstill quantize`: a quantized teacher checkpoint, its fidelity screen, or its layer map."""

    teacher: str = setting(DEFAULT_TEACHER, "hub id or folder of the float teacher")
    out: str = setting("", "quantized checkpoint folder (with --layer-map: the map's folder)")
    scheme: SchemeName = setting(
        SchemeName.UNIFORM, "named scheme (default uniform); the ends are the first and last quarter"
    )
    bits: int | None = setting(None, "bits of the crushed layers: 2 3 4 5 6 8 (default 4; mxfp8: 8)")
    group_size: int | None = setting(None, "32, 64 or 128 (default 64; mx modes: 32)")
    mode: Mode = setting(Mode.AFFINE, "affine (default), mxfp4 or mxfp8")
    layers: tuple[Any, ...] = setting(
        (), "layer table RANGE:BITS,... e.g. 0-1:8,2-9:4,10-11:16 (16: float16)", metavar="LAYERS"
    )
    embeddings_bits: int | None = setting(None, "quantize the embeddings too (default: float16)")
    screen: bool = setting(False, "compare with the float teacher")
    layer_map: bool = setting(False, "map per-layer sensitivity and propose a scheme under --target-bits")
    corpus: str = setting("", "sentences for the screen / layer map (.txt(.gz), .jsonl, .parquet)")
    sentences: int = setting(2000, "how many corpus sentences (default 2000)")
    retrieval: str | None = setting(None, "a BEIR task folder: NDCG@10 of both teachers", metavar="TASK_DIR")
    retrieval_docs: int | None = setting(None, "corpus subset: relevant docs + N others (default: all)")
    max_seq_length: int | None = setting(
        None, "teacher truncation (both teachers; default: the checkpoint's)"
    )
    batch_size: int = setting(64, "teacher batch size")
    block_size: int = setting(1, "layer map: layers per probe")
    target_bits: float = setting(6.5, "layer map: bits/weight budget of the proposal (Linear weights)")
    seed: int = setting(0, "seed of the retrieval subset")

    def __post_init__(self) -> None:
        settle(self)
        if self.screen and self.layer_map:
            raise ConfigError("give --screen or --layer-map, not both")
        if (self.screen or self.layer_map) and not self.corpus:
            raise ConfigError("the screen and the layer map need --corpus FILE (sentences to embed)")
        if self.sentences < 11:
            raise ConfigError(f"sentences={self.sentences} must be >= 11 (top-10 neighbours)")
        if self.batch_size < 1 or self.block_size < 1:
            raise ConfigError("batch_size and block_size must be >= 1")
        if self.retrieval_docs is not None and self.retrieval_docs < 0:
            raise ConfigError(f"retrieval_docs={self.retrieval_docs} must be >= 0 (unset: the whole corpus)")
