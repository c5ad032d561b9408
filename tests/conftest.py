"""Shared test helpers: a tiny random BERT checkpoint on disk and a plain numpy reference encoder.

`make_bert(folder, ...)` writes a complete Hugging Face + sentence-transformers model folder
(config.json, model.safetensors with `BertModel` names, an in-memory WordPiece tokenizer.json,
modules.json, pooling / normalize / max length / prompts metadata). `NumpyBert(folder)` runs the
same checkpoint in float64 numpy, one text at a time without padding, so it checks the MLX
encoder's arithmetic, its padding mask and its pooling independently of potstill's code.

Fixtures: `make_bert` (the factory), `numpy_bert` (the reference class), `tiny_bert` (a default
checkpoint shared by the session; do not modify it), `sentences`, `run_cli` (a real
`python -m potstill.cli` subprocess). The helpers can also be imported: `from conftest import
make_bert, pooling_config, edit_weights, CLS_ID`.
"""

from __future__ import annotations

# Before any test module imports mlx.core: potstill gives MLX its fast BLAS at import, and Python
# binds libmlx's BLAS symbols when mlx.core loads (a test module importing mlx.core first left the
# whole session on the ~50x slower reference BLAS).
import potstill  # noqa: F401  # isort: skip

# isort: split

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

REPO_ROOT = Path(__file__).resolve().parents[1]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)
_WORDS = [
    *("the", "a", "an", "cat", "dog", "sat", "on", "mat", "is", "was", "and", "of", "to", "in", "it"),
    *("this", "that", "for", "with", "sentence", "represent", "searching", "relevant", "passages"),
    *("query", "hello", "world", "quick", "brown", "fox", "jumps", "over", "lazy", "play", "run"),
    *("walk", "talk"),
]
_PIECES = ["##s", "##ed", "##ing", "##er", "##ly"]
_PUNCT = list(".,:!?'-")
_LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]


def tiny_vocab() -> dict[str, int]:
    """~110 WordPiece entries: specials, words, ##pieces, and every letter (so no ASCII word is UNK)."""
    entries: list[str] = []
    for tok in [*SPECIALS, *_PUNCT, *_WORDS, *_PIECES, *_LETTERS, *("##" + c for c in _LETTERS)]:
        if tok not in entries:
            entries.append(tok)
    return {tok: i for i, tok in enumerate(entries)}


def tiny_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    """A BERT WordPiece tokenizer built in memory: lowercase, [CLS] text [SEP]."""
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(SPECIALS)
    return tok


def random_bert_weights(
    *,
    vocab_size: int,
    hidden: int,
    layers: int,
    intermediate: int,
    max_position: int,
    seed: int,
    std: float,
) -> dict[str, np.ndarray]:
    """`BertModel` tensors (Hugging Face names, pooler included), normal(0, std) with a fixed seed."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def norm(prefix: str) -> dict[str, np.ndarray]:
        # LayerNorm gain around 1 so activations keep their scale; both parts still random.
        return {f"{prefix}.weight": 1.0 + normal(hidden), f"{prefix}.bias": normal(hidden)}

    w: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": normal(vocab_size, hidden),
        "embeddings.position_embeddings.weight": normal(max_position, hidden),
        "embeddings.token_type_embeddings.weight": normal(2, hidden),
        **norm("embeddings.LayerNorm"),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            w[f"{p}.attention.self.{name}.weight"] = normal(hidden, hidden)
            w[f"{p}.attention.self.{name}.bias"] = normal(hidden)
        w[f"{p}.attention.output.dense.weight"] = normal(hidden, hidden)
        w[f"{p}.attention.output.dense.bias"] = normal(hidden)
        w |= norm(f"{p}.attention.output.LayerNorm")
        w[f"{p}.intermediate.dense.weight"] = normal(intermediate, hidden)
        w[f"{p}.intermediate.dense.bias"] = normal(intermediate)
        w[f"{p}.output.dense.weight"] = normal(hidden, intermediate)
        w[f"{p}.output.dense.bias"] = normal(hidden)
        w |= norm(f"{p}.output.LayerNorm")
    w["pooler.dense.weight"] = normal(hidden, hidden)
    w["pooler.dense.bias"] = normal(hidden)
    return w


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def make_bert(
    folder: Path,
    *,
    pooling: str = "mean",
    normalize: bool = True,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    intermediate: int = 128,
    max_position: int = 128,
    max_seq_length: int | None = None,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    hidden_act: str = "gelu",
    model_type: str = "bert",
    prefix: str = "",
    sentence_transformers: bool = True,
    seed: int = 0,
    std: float = 0.2,
) -> Path:
    """Write a tiny random BERT sentence encoder into `folder` (created) and return it.

    `pooling` is "mean" or "cls" (1_Pooling/config.json); `normalize` adds a 2_Normalize module;
    `max_seq_length` goes to sentence_bert_config.json (omitted when None); `prompts` and
    `default_prompt_name` to config_sentence_transformers.json. `prefix="bert."` names tensors as a
    `BertForX` checkpoint does. `sentence_transformers=False` writes a plain Hugging Face folder.
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling={pooling!r}: the factory writes 'mean' or 'cls'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    _write_json(
        folder / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": model_type,
            "vocab_size": len(vocab),
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": intermediate,
            "max_position_embeddings": max_position,
            "type_vocab_size": 2,
            "layer_norm_eps": 1e-12,
            "hidden_act": hidden_act,
            "hidden_dropout_prob": 0.1,
            "pad_token_id": PAD_ID,
            "position_embedding_type": "absolute",
            "initializer_range": std,
        },
    )
    weights = random_bert_weights(
        vocab_size=len(vocab),
        hidden=hidden,
        layers=layers,
        intermediate=intermediate,
        max_position=max_position,
        seed=seed,
        std=std,
    )
    save_file({prefix + k: v for k, v in weights.items()}, str(folder / "model.safetensors"))
    tiny_tokenizer(vocab).save(str(folder / "tokenizer.json"))
    # What transformers' AutoTokenizer needs beside tokenizer.json (sentence-transformers loads the folder).
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]"}
    specials["mask_token"] = "[MASK]"
    _write_json(folder / "special_tokens_map.json", specials)
    _write_json(
        folder / "tokenizer_config.json",
        {
            **specials,
            "do_lower_case": True,
            "model_max_length": max_position,
            "tokenizer_class": "BertTokenizer",
        },
    )
    if not sentence_transformers:
        return folder
    write_modules(folder, hidden, pooling, normalize)
    if max_seq_length is not None:
        _write_json(
            folder / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False}
        )
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "prompts": prompts or {},
            "default_prompt_name": default_prompt_name,
            "similarity_fn_name": "cosine",
        },
    )
    return folder


def write_modules(folder: Path, hidden: int, pooling: str, normalize: bool) -> None:
    """sentence-transformers' modules.json: Transformer, Pooling (its 1_Pooling/config.json), and
    Normalize when `normalize`."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (folder / "2_Normalize").mkdir(exist_ok=True)
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "1_Pooling" / "config.json", pooling_config(hidden, pooling))


def pooling_config(hidden: int, pooling: str, **extra: bool) -> dict[str, Any]:
    """A sentence-transformers 1_Pooling/config.json with one mode on (plus `extra` modes)."""
    cfg: dict[str, Any] = {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    cfg.update(extra)
    return cfg


def edit_weights(folder: Path, edit: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> None:
    """Rewrite `folder/model.safetensors` through `edit(tensors) -> tensors`."""
    path = folder / "model.safetensors"
    save_file(edit(load_file(str(path))), str(path))


# ------------------------------------------------------------------------------- numpy reference
try:
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover - scipy comes with scikit-learn
    _erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


_NP_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gelu": _gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class NumpyBert:
    """A float64 numpy BERT forward pass over a checkpoint folder written by `make_bert`.

    Reads config.json, model.safetensors (Hugging Face names, optional `bert.` prefix) and
    tokenizer.json itself; shares no code with potstill.
    """

    def __init__(self, folder: Path):
        self.cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        raw = load_file(str(folder / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in raw.items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.act = _NP_ACTIVATIONS[self.cfg.get("hidden_act", "gelu")]

    def tokenize(self, texts: Sequence[str], *, max_length: int | None = None) -> list[list[int]]:
        """Token ids with [CLS]/[SEP]; `max_length` truncates the text and keeps both."""
        ids = []
        for t in texts:
            e = self.tokenizer.encode(t).ids
            if max_length is not None and len(e) > max_length:
                e = [*e[: max_length - 1], e[-1]]
            ids.append(e)
        return ids

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last-layer states (batch, length, hidden) for padded ids with a 0/1 key mask."""
        w, cfg = self.w, self.cfg
        eps = float(cfg.get("layer_norm_eps", 1e-12))
        heads = int(cfg["num_attention_heads"])
        b, length = ids.shape
        d = int(cfg["hidden_size"]) // heads
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        key_bias = np.where(mask[:, None, None, :].astype(bool), 0.0, -np.inf)
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}"

            def lin(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return t @ w[f"{p}.{name}.weight"].T + w[f"{p}.{name}.bias"]

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(b, length, heads, d).transpose(0, 2, 1, 3)

            q = split(lin(x, "attention.self.query"))
            k = split(lin(x, "attention.self.key"))
            v = split(lin(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + key_bias
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            o = (probs @ v).transpose(0, 2, 1, 3).reshape(b, length, heads * d)
            x = _layer_norm(
                x + lin(o, "attention.output.dense"),
                w[f"{p}.attention.output.LayerNorm.weight"],
                w[f"{p}.attention.output.LayerNorm.bias"],
                eps,
            )
            h = lin(self.act(lin(x, "intermediate.dense")), "output.dense")
            x = _layer_norm(x + h, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], eps)
        return x

    def encode_ids(self, ids: Sequence[Sequence[int]], *, pooling: str, normalize: bool) -> np.ndarray:
        """Pooled embeddings, each sequence run alone (no padding at all)."""
        rows = []
        for seq in ids:
            arr = np.asarray(seq, dtype=np.int64)[None, :]
            h = self.hidden(arr, np.ones_like(arr))[0]
            if pooling == "cls":
                v = h[0]
            elif pooling == "mean":
                v = h.mean(0)
            elif pooling == "token-mean":
                v = h[1:-1].mean(0)
            else:
                raise ValueError(pooling)
            rows.append(v / np.linalg.norm(v) if normalize else v)
        return np.stack(rows) if rows else np.zeros((0, int(self.cfg["hidden_size"])))

    def encode(
        self,
        texts: Sequence[str],
        *,
        pooling: str,
        normalize: bool,
        prefix: str = "",
        max_length: int | None = None,
    ) -> np.ndarray:
        """Embed texts as a sentence-transformers model with this checkpoint would."""
        ids = self.tokenize([prefix + t for t in texts], max_length=max_length)
        return self.encode_ids(ids, pooling=pooling, normalize=normalize)


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(name="make_bert")
def make_bert_fixture() -> Callable[..., Path]:
    """The `make_bert(folder, **options) -> folder` factory."""
    return make_bert


@pytest.fixture(name="numpy_bert")
def numpy_bert_fixture() -> type[NumpyBert]:
    """The `NumpyBert` reference class: `numpy_bert(folder).encode(texts, pooling=..., normalize=...)`."""
    return NumpyBert


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A default tiny checkpoint (mean pooling, normalized), shared by the session: do not modify it."""
    return make_bert(tmp_path_factory.mktemp("tiny-bert") / "model")


SENTENCES = [
    "the cat sat on the mat.",
    "a quick brown fox jumps over the lazy dog!",
    "hello world",
    "this sentence is for searching relevant passages, and it was walked over by a talking dog.",
    "dogs",
    "the lazy cat played with the brown dog and the quick fox over and over again in the world.",
    "zyx qwv",
    "It was THE Cat's mat.",
]


@pytest.fixture
def sentences() -> list[str]:
    """Texts of very different token counts (2 to 30+ tokens), all in the tiny vocabulary."""
    return list(SENTENCES)


def run_cli(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m potstill.cli ARGS` in a subprocess, `env` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "potstill.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd or REPO_ROOT,
        timeout=300,
        check=False,
    )


@pytest.fixture(name="run_cli")
def run_cli_fixture() -> Callable[..., subprocess.CompletedProcess[str]]:
    """The `run_cli(*args, env=None, cwd=None)` helper: a real `python -m potstill.cli` run."""
    return run_cli


def sigkill_when_exists(args: Sequence[str], marker: Path, timeout: float = 240.0) -> None:
    """Start `python -m potstill.cli ARGS`, SIGKILL it as soon as `marker` exists (a checkpoint)."""
    import signal
    import time

    cmd = [sys.executable, "-m", "potstill.cli", *args]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while not marker.exists():
            assert proc.poll() is None, f"the command ended before {marker} appeared"
            assert time.time() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
