"""MLX BERT encoder for Hugging Face `BertModel` checkpoints (BERT, MiniLM, bge, e5, mxbai); the
other encoder families (`potstill.teacher.mpnet`) build on its layers.

Post-LN transformer: embeddings (word + position + token type, LayerNorm), then per layer
self-attention -> add & LayerNorm -> GELU feed-forward -> add & LayerNorm. `sanitize` maps
checkpoint names onto this module tree strictly: an unknown or a missing weight is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from potstill.teacher import kernels


class UnsupportedModelError(ValueError):
    """The checkpoint is not an encoder that potstill can run."""


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT `config.json` that the encoder uses."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    model_type: str = "bert"
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"

    MODEL_TYPE: ClassVar[str] = "bert"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BertConfig:
        """Build from a `config.json` dict of this family, ignoring unknown keys."""
        model_type = str(raw.get("model_type", cls.MODEL_TYPE))
        if model_type != cls.MODEL_TYPE:
            raise UnsupportedModelError(f"model_type={model_type!r} is not a {cls.__name__}")
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in raw.items() if k in names})
        if cfg.hidden_act not in _ACTIVATIONS:
            raise UnsupportedModelError(
                f"hidden_act={cfg.hidden_act!r} is not supported; expected one of {sorted(_ACTIVATIONS)}"
            )
        if cfg.position_embedding_type != "absolute":
            raise UnsupportedModelError(
                f"position_embedding_type={cfg.position_embedding_type!r} is not supported; "
                "potstill runs absolute position embeddings"
            )
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(
                f"hidden_size={cfg.hidden_size} is not divisible by "
                f"num_attention_heads={cfg.num_attention_heads}"
            )
        return cfg


_ACTIVATIONS = {
    "gelu": kernels.gelu_erf,
    "gelu_new": nn.gelu_approx,
    "gelu_pytorch_tanh": nn.gelu_approx,
    "relu": kernels.relu,
}


class Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def __call__(self, input_ids: mx.array) -> mx.array:
        positions = mx.arange(input_ids.shape[1])
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        # Sentence encoders take a single segment: token type 0 everywhere.
        x = x + self.token_type_embeddings.weight[0]
        return self.norm(x)


class Attention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        # Query, key and value projections as one Linear (rows: q, then k, then v): one large
        # matmul instead of three; `sanitize` concatenates the checkpoint's three weights.
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        b, length, _ = x.shape
        qkv = self.qkv(x).reshape(b, length, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if mx.default_device() == mx.cpu:
            # MLX's fused attention on CPU spends most of its time in a scalar `exp`.
            scores = (q * self.head_dim**-0.5) @ k.transpose(0, 1, 3, 2) + mask
            o = kernels.softmax(scores) @ v
        else:
            o = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5, mask=mask)
        return self.out(o.transpose(0, 2, 1, 3).reshape(b, length, -1))


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.intermediate = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.output = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.output_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.act = _ACTIVATIONS[cfg.hidden_act]

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        x = self.attention_norm(x + self.attention(x, mask))
        return self.output_norm(x + self.output(self.act(self.intermediate(x))))


class BertEncoder(nn.Module):
    """Token ids + attention mask -> last-layer hidden states (batch, length, hidden)."""

    @staticmethod
    def make_embeddings(cfg: BertConfig) -> nn.Module:
        return Embeddings(cfg)

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = self.make_embeddings(cfg)
        self.layers = [Layer(cfg) for _ in range(cfg.num_hidden_layers)]

    def __call__(self, input_ids: mx.array, attention_mask: mx.array) -> mx.array:
        x = self.embeddings(input_ids)
        bias = self.attention_bias(attention_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def attention_bias(self, attention_mask: mx.array, dtype: mx.Dtype) -> mx.array:
        """What every layer adds to its attention scores: 0 over tokens, a large negative number
        over padding keys; (batch, 1, 1, length)."""
        # -1e4, as BERT's own: far below any real score, and small enough for the CPU softmax's
        # branch-free floor (`kernels.exp_nonpositive`) to stay exact.
        neg = mx.array(-1e4, dtype=dtype)
        return mx.where(attention_mask[:, None, None, :].astype(mx.bool_), mx.array(0, dtype), neg)


# Checkpoint name (after stripping a `bert.` prefix) -> name in this module tree.
_RENAMES: list[tuple[str, str]] = [
    (r"^embeddings\.LayerNorm\.(weight|bias)$", r"embeddings.norm.\1"),
    (r"^embeddings\.LayerNorm\.gamma$", "embeddings.norm.weight"),
    (r"^embeddings\.LayerNorm\.beta$", "embeddings.norm.bias"),
    (r"^embeddings\.(word|position|token_type)_embeddings\.weight$", r"embeddings.\1_embeddings.weight"),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.", r"layers.\1.attention.\2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attention.out."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.attention_norm."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.intermediate."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.output."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.output_norm."),
]
# Checkpoint tensors a sentence encoder does not use.
_DROPPED = re.compile(r"^(pooler\.|cls\.|embeddings\.position_ids$)")


def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Map Hugging Face BERT checkpoint names to this encoder's names; unknown names are errors."""
    return fuse_qkv(rename(weights, "bert.", _RENAMES, _DROPPED, "a BertModel"))


def rename(
    weights: dict[str, mx.array],
    prefix: str,
    renames: list[tuple[str, str]],
    dropped: re.Pattern[str],
    what: str,
) -> dict[str, mx.array]:
    """Checkpoint names (less a leading `prefix`) -> module names by the first matching rename;
    `dropped` names are left out; any other name is an error naming `what` was expected."""
    out: dict[str, mx.array] = {}
    unknown: list[str] = []
    for name, value in weights.items():
        key = name.removeprefix(prefix)
        if dropped.match(key):
            continue
        for pattern, repl in renames:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise UnsupportedModelError(
            f"{len(unknown)} checkpoint tensors do not belong to the encoder ({shown}); "
            f"is this {what} checkpoint?"
        )
    return out


def fuse_qkv(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Concatenate each layer's query, key and value tensors into its `qkv` Linear."""
    out = dict(weights)
    for name in [n for n in weights if ".attention.query." in n]:
        parts = [name.replace(".query.", f".{p}.") for p in ("query", "key", "value")]
        missing = [p for p in parts if p not in weights]
        if missing:
            raise UnsupportedModelError(f"checkpoint lacks {missing[0]} beside {name}")
        out[name.replace(".query.", ".qkv.")] = mx.concatenate([weights[p] for p in parts], axis=0)
        for p in parts:
            del out[p]
    return out


def load_weights(model: BertEncoder, weights: dict[str, mx.array]) -> None:
    """Load sanitized weights strictly: every parameter present, every shape right."""
    expected = dict(tree_flatten(model.parameters()))
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise UnsupportedModelError(
            f"checkpoint does not match the config: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for name, value in weights.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise UnsupportedModelError(
                f"tensor {name} has shape {tuple(value.shape)}, config expects {tuple(expected[name].shape)}"
            )
    model.load_weights(list(weights.items()), strict=True)
