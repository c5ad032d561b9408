"""The teacher: a BERT- or MPNet-family sentence encoder in MLX, loaded from a hub id or a local folder.

`Teacher.load(id_or_path)` reads the checkpoint, its tokenizer and its sentence-transformers
metadata (pooling, normalisation, max length, prompts). `encode(texts)` sorts texts by token
count, pads each batch to its longest text, then restores the input order. On a multi-core CPU
a large job runs on one worker process per core (`workers`), a small one on one MLX stream per
core in this process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from functools import cached_property
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from potstill import distributed
from potstill.teacher import checkpoint, encoders, quantized
from potstill.teacher.backend import blas_threads, cpu_cores, on_cpu
from potstill.teacher.bert import BertEncoder, load_weights
from potstill.vectors import normalise

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "token-mean")
NATIVE_FORMAT = "potstill-mlx"
NATIVE_VERSION = 1  # bump when the module tree (parameter names) changes
_METADATA_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "README.md",
)
WORKERS_ENV = "POTSTILL_TEACHER_WORKERS"  # worker processes for large jobs; 0: encode in-process
POOL_MIN_TOKENS = 50_000  # a smaller first job runs in-process: starting the workers costs seconds


class Teacher:
    """A sentence encoder: tokenizer + MLX encoder (BERT or MPNet) + pooling (+ normalisation)."""

    def __init__(
        self,
        name: str,
        folder: Path,
        model: BertEncoder,
        tokenizer: Tokenizer,
        meta: checkpoint.SentenceMeta,
        quantization: dict[str, Any] | None,
        max_seq_length: int,
        dtype: mx.Dtype = mx.float32,
    ):
        self.name = name
        self.folder = folder
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta
        self.quantization = quantization
        self.max_seq_length = max_seq_length
        self.dtype = dtype
        self.cpu_streams = cpu_cores()
        self.workers = default_workers()
        self.pool_min_tokens = POOL_MIN_TOKENS
        self._pool: Any = None  # workers.Pool, started by the first large job

    # ----------------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        id_or_path: str | Path,
        *,
        revision: str | None = None,
        max_seq_length: int | None = None,
        quantization: dict[str, Any] | None = None,
        dtype: mx.Dtype = mx.float32,
    ) -> Teacher:
        """Load a teacher from a local folder or a Hugging Face hub id.

        `quantization` (a config block, see `potstill.teacher.quantized`) quantizes a float
        checkpoint on load; a folder saved quantized re-applies its own block.
        """
        folder = checkpoint.resolve(id_or_path, revision)
        config_file = folder / "config.json"
        if not config_file.exists():
            raise checkpoint.TeacherLoadError(f"{folder} has no config.json; is this a model folder?")
        raw = checkpoint.read_json(config_file)
        cfg = encoders.config_from_dict(raw)
        files = checkpoint.weight_files(folder)
        weights: dict[str, mx.array] = {}
        for f in files:
            try:
                weights.update(mx.load(str(f)))  # type: ignore[arg-type]
            except Exception as e:
                raise checkpoint.TeacherLoadError(f"cannot read weights {f}: {e}") from e
        weights = {
            k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()
        }
        native = raw.get("potstill", {}).get("format") == NATIVE_FORMAT
        if native and raw["potstill"].get("version") != NATIVE_VERSION:
            raise checkpoint.TeacherLoadError(
                f"{folder} was saved by another potstill version (format version "
                f"{raw['potstill'].get('version')}, this one reads {NATIVE_VERSION}); save it again from the source checkpoint"
            )
        saved_quant = raw.get("quantization") if native else None
        if saved_quant and quantization:
            raise ValueError(f"{folder} is already quantized; load it without a quantization setting")
        block = saved_quant or quantization
        model = encoders.build(cfg)
        if saved_quant:
            quantized.apply(model, saved_quant)
        load_weights(model, weights if native else encoders.sanitize(cfg, weights))
        if quantization and not saved_quant:
            # From float16 weights, as a saved folder holds them: `save` then loses nothing.
            quantized.quantize_model(model, quantization, dtype)
        if block and on_cpu():
            quantized.use_cpu_kernels(model)
        mx.eval(model.parameters())
        meta = checkpoint.sentence_meta(folder)
        limit = max_seq_length or meta.max_seq_length or cfg.max_position_embeddings
        limit = min(limit, cfg.max_position_embeddings)
        tokenizer = _load_tokenizer(folder)
        # Truncate the text, not the special tokens: [CLS] ... [SEP] as sentence-transformers does.
        tokenizer.enable_truncation(max_length=limit)
        return cls(str(id_or_path), folder, model, tokenizer, meta, block, limit, dtype)

    def save(self, out: Path) -> None:
        """Write this teacher as an MLX folder that `Teacher.load` reads back exactly."""
        out.mkdir(parents=True, exist_ok=True)
        raw = checkpoint.read_json(self.folder / "config.json")
        raw["potstill"] = {"format": NATIVE_FORMAT, "version": NATIVE_VERSION, "source": self.name}
        if self.quantization:
            raw["quantization"] = self.quantization
        else:
            raw.pop("quantization", None)
        (out / "config.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        params = dict(tree_flatten(self.model.parameters()))
        if self.quantization:  # its float tensors hold float16 numbers (`quantize_model`)
            params = {
                k: v.astype(mx.float16) if mx.issubdtype(v.dtype, mx.floating) else v
                for k, v in params.items()
            }
        mx.save_safetensors(str(out / "model.safetensors"), params)
        if self.folder.resolve() != out.resolve():
            for name in _METADATA_FILES:
                if (self.folder / name).exists():
                    shutil.copy2(self.folder / name, out / name)
            for sub in [*self.folder.glob("*_Pooling"), *self.folder.glob("*_Normalize")]:
                shutil.copytree(sub, out / sub.name, dirs_exist_ok=True)
        # The max length this teacher runs with (a load-time override included) travels along.
        st_config = out / "sentence_bert_config.json"
        st = checkpoint.read_json(st_config) if st_config.exists() else {}
        st["max_seq_length"] = self.max_seq_length
        st_config.write_text(json.dumps(st, indent=2) + "\n", encoding="utf-8")

    # ----------------------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        """Width of the teacher's embeddings."""
        return self.model.config.hidden_size

    @property
    def dtype_name(self) -> str:
        """The float dtype the weights were loaded in, e.g. 'float32'."""
        return str(self.dtype).rsplit(".", 1)[-1]

    @property
    def pooling(self) -> str:
        return self.meta.pooling

    @property
    def normalize(self) -> bool:
        return self.meta.normalize

    @cached_property
    def weights_sha256(self) -> str:
        """sha256 of the weight files: identifies this teacher in manifests."""
        return checkpoint.weights_sha256(checkpoint.weight_files(self.folder))

    def prompt_text(self, prompt: str | None) -> str:
        """A prompt name from the checkpoint (e.g. mxbai's 'query'), or a literal prompt string."""
        if prompt is None:
            name = self.meta.default_prompt_name
            return self.meta.prompts.get(name, "") if name else ""
        return self.meta.prompts.get(prompt, prompt)

    # ------------------------------------------------------------------------------- encoding
    def tokenize(self, texts: Sequence[str], prompt: str | None = None) -> list[list[int]]:
        """Token ids with the tokenizer's special tokens, truncated to `max_seq_length`."""
        prefix = self.prompt_text(prompt)
        batch = [prefix + t for t in texts] if prefix else list(texts)
        return [e.ids for e in self.tokenizer.encode_batch(batch, add_special_tokens=True)]

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        prompt: str | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
    ) -> np.ndarray:
        """Embed texts: float32 array (len(texts), dim), in input order.

        `pooling` overrides the checkpoint's (mean | cls | token-mean: the mean without the
        first and last token, tokenlearn's target); `normalize` likewise.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not a single string")
        skip = 0
        prefix = self.prompt_text(prompt)
        if prefix and not self.meta.include_prompt:
            # As sentence-transformers: [CLS] and the prompt's tokens stay out of the pooling.
            skip = len(self.tokenizer.encode(prefix, add_special_tokens=True).ids) - 1
        return self.encode_ids(
            self.tokenize(texts, prompt),
            batch_size=batch_size,
            pooling=pooling,
            normalize=normalize,
            skip_leading=skip,
        )

    def encode_ids(
        self,
        ids: Sequence[Sequence[int]],
        *,
        batch_size: int = 64,
        pooling: str | None = None,
        normalize: bool | None = None,
        skip_leading: int = 0,
    ) -> np.ndarray:
        """Embed token id sequences (special tokens included) as `encode` does; a mean pooling
        leaves out the first `skip_leading` positions."""
        pooling = pooling or self.pooling
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not supported; use one of {POOLINGS}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        normalize = self.normalize if normalize is None else normalize
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if not len(ids):
            return out
        rows, batches = self._plan(ids, batch_size)
        pool = self._pool_for(rows, batches)
        if pool is not None:
            # Longest batches first: the last ones to finish are then short, and no core idles long.
            jobs = (
                (idx, *_pad_rows([rows[i] for i in idx], self.max_seq_length)) for idx in reversed(batches)
            )
            try:
                for idx, pooled in pool.run(jobs, pooling, skip_leading):
                    out[idx] = pooled
            except BaseException:
                self.close()  # a worker failed, or Ctrl-C: the next job starts fresh workers
                raise
        else:
            forward = self._forward(pooling, skip_leading)
            for idx, _, result in self._run_batches(rows, batches, forward):
                out[idx] = np.array(result.astype(mx.float32), copy=False)
        return normalise(out) if normalize else out

    def close(self) -> None:
        """Stop this teacher's worker processes, if it started any (also done when it is freed)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def hidden_states(
        self, ids: Sequence[Sequence[int]], *, batch_size: int = 64
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The last layer's outputs, batch by batch (in length order, not input order): yields
        (indices into `ids`, hidden float32 (batch, width, dim), padded ids int32 (batch, width));
        padding positions hold id -1."""
        model = self.model

        def run(tokens: mx.array, mask: mx.array) -> mx.array:
            return model(tokens, mask)

        rows, batches = self._plan(ids, batch_size)
        for idx, (tokens, mask), hidden in self._run_batches(rows, batches, run):
            padded = np.where(np.array(mask) > 0, np.array(tokens), -1).astype(np.int32)
            yield idx, np.array(hidden.astype(mx.float32), copy=False), padded

    def _plan(
        self, ids: Sequence[Sequence[int]], batch_size: int
    ) -> tuple[list[list[int]], list[np.ndarray]]:
        """The rows cut to `max_seq_length`, and batches of row indices in length order."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        cap = self.max_seq_length
        # Over-long sequences keep their last (special) token, as tokenizer truncation does.
        rows = [list(s) if len(s) <= cap else [*s[: cap - 1], s[-1]] for s in ids]
        lengths = np.array([len(s) for s in rows])
        if (lengths == 0).any():
            raise ValueError(f"sequence {int(np.argmin(lengths))} has no tokens")
        order = np.argsort(lengths, kind="stable")
        return rows, [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def _pool_for(self, rows: list[list[int]], batches: list[np.ndarray]) -> Any:
        """The worker pool for this job, started if the job is large enough; None: in-process."""
        if self.workers < 2 or len(batches) < 2 or not on_cpu():
            return None
        if self._pool is None:
            if sum(map(len, rows)) < self.pool_min_tokens:
                return None
            from potstill.teacher.workers import Pool  # lazy: `python -m` runs that module

            self._pool = Pool(self, self.workers)
            weakref.finalize(self, self._pool.close)
        return self._pool

    def _run_batches(
        self,
        rows: list[list[int]],
        batches: list[np.ndarray],
        forward: Callable[[mx.array, mx.array], mx.array],
    ) -> Iterator[tuple[np.ndarray, tuple[mx.array, mx.array], mx.array]]:
        """Run `forward(tokens, mask)` over the batches in this process; yields (indices,
        (tokens, mask), result)."""
        streams = self._streams()
        # One stream per core, each running whole batches with a one-thread BLAS: MLX's CPU
        # element-wise ops are single-threaded, so this keeps every core busy all the time.
        threads = blas_threads(1) if len(streams) > 1 else nullcontext()
        with threads:
            for group in range(0, len(batches), len(streams)):
                running = []
                for stream, idx in zip(streams, batches[group : group + len(streams)], strict=False):
                    tokens, mask = map(mx.array, _pad_rows([rows[i] for i in idx], self.max_seq_length))
                    with mx.stream(stream):
                        running.append((idx, (tokens, mask), forward(tokens, mask)))
                mx.eval([r for *_, r in running])
                yield from running

    def _forward(self, pooling: str, skip_leading: int = 0) -> Callable[[mx.array, mx.array], mx.array]:
        model = self.model

        def run(tokens: mx.array, mask: mx.array) -> mx.array:
            return pool(model(tokens, mask), mask, pooling, skip_leading)

        return run

    def _streams(self) -> list[mx.Stream]:
        """Streams to spread batches over: one per core on CPU, the default one on a GPU."""
        if on_cpu() and self.cpu_streams > 1:
            return _cpu_streams(self.cpu_streams)
        return [mx.default_stream(mx.default_device())]


def pool(hidden: mx.array, mask: mx.array, pooling: str, skip_leading: int = 0) -> mx.array:
    """Pool hidden states (batch, length, dim) with a 0/1 mask: mean, cls or token-mean; the
    means leave out the first `skip_leading` positions."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.astype(hidden.dtype)
    if skip_leading:
        weights = weights * (mx.arange(mask.shape[1])[None, :] >= skip_leading)
    if pooling == "token-mean":
        # Drop the first ([CLS]) and the last real ([SEP]) token of every row.
        last = mask.sum(axis=1, keepdims=True) - 1
        positions = mx.arange(mask.shape[1])[None, :]
        weights = weights * (positions > 0) * (positions < last)
    total = mx.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    return (hidden * weights[..., None]).sum(axis=1) / total


_STREAMS: list[mx.Stream] = []


def _cpu_streams(n: int) -> list[mx.Stream]:
    """`n` CPU streams shared by every Teacher of the process (MLX cannot free a stream, and
    each stream owns a thread)."""
    while len(_STREAMS) < n:
        _STREAMS.append(mx.new_stream(mx.cpu))
    return _STREAMS[:n]


def default_workers() -> int:
    """Worker processes for large jobs: POTSTILL_TEACHER_WORKERS, else one per core on a
    multi-core CPU; 0 (in-process) on a GPU, on one core, and under mlx.launch, whose ranks
    already divide the machine."""
    setting = os.environ.get(WORKERS_ENV, "").strip()
    if setting:
        if not setting.isdigit():
            raise ValueError(f"{WORKERS_ENV}={setting!r} should be a number of processes (0: none)")
        return int(setting)
    if not on_cpu() or distributed.launched():
        return 0
    cores = cpu_cores()
    return cores if cores > 1 else 0


def _pad_rows(rows: list[list[int]], cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id rows to the longest row: (tokens, 0/1 mask), int32. Only the encoder's
    element-wise kernels are compiled, and a new shape just re-traces them, so exact widths cost
    nothing and short rows (a vocabulary token is 3 ids) waste no compute on padding."""
    width = min(max(len(r) for r in rows), cap)
    tokens = np.zeros((len(rows), width), dtype=np.int32)
    mask = np.zeros((len(rows), width), dtype=np.int32)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return tokens, mask


def _load_tokenizer(folder: Path) -> Tokenizer:
    """`tokenizer.json`, or a WordPiece tokenizer from `vocab.txt`; padding and truncation off."""
    if (folder / "tokenizer.json").exists():
        try:
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:
            raise checkpoint.TeacherLoadError(f"cannot read {folder / 'tokenizer.json'}: {e}") from e
    elif (folder / "vocab.txt").exists():
        lower = True
        if (folder / "tokenizer_config.json").exists():
            lower = bool(checkpoint.read_json(folder / "tokenizer_config.json").get("do_lower_case", True))
        tok = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lower)._tokenizer
    else:
        raise checkpoint.TeacherLoadError(f"{folder} has no tokenizer: expected tokenizer.json or vocab.txt")
    # We pad per batch ourselves and set truncation in Teacher.load; a tokenizer.json that pads every
    # sequence to 128 (as all-MiniLM-L6-v2's does) would waste most of the compute.
    tok.no_padding()
    tok.no_truncation()
    return tok
