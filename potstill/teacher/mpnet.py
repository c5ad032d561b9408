"""MLX MPNet encoder for Hugging Face `MPNetModel` checkpoints (all-mpnet-base-v2,
multi-qa-mpnet-base-dot-v1, ...).

The layers are BERT's (`potstill.teacher.bert.Layer`: post-LN self-attention and GELU
feed-forward). What differs:
- the embeddings: word + position, no token types; position ids start at `padding_idx + 1` (2), as
  RoBERTa's do (with right padding, the real tokens of every row sit at 2, 3, ...; the padding
  positions are masked out and never pooled);
- a relative position bias, T5's log-spaced buckets of `key - query` (32 buckets, exact up to
  8 apart, up to 128), one learned scalar per bucket and head, computed once and added to the
  attention scores of every layer (it rides in the additive mask).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from potstill.teacher.bert import BertConfig, BertEncoder, UnsupportedModelError, fuse_qkv, rename

BUCKETS = 32  # transformers' MPNet always buckets into 32 (whatever the config's embedding size)
MAX_DISTANCE = 128


@dataclass(frozen=True)
class MPNetConfig(BertConfig):
    """The fields of a Hugging Face MPNet `config.json` that the encoder uses."""

    MODEL_TYPE: ClassVar[str] = "mpnet"

    vocab_size: int = 30527
    max_position_embeddings: int = 514
    layer_norm_eps: float = 1e-5
    model_type: str = "mpnet"
    pad_token_id: int = 1
    relative_attention_num_buckets: int = BUCKETS

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BertConfig:
        cfg = super().from_dict(raw)
        assert isinstance(cfg, MPNetConfig)
        if cfg.relative_attention_num_buckets != BUCKETS:
            raise UnsupportedModelError(
                f"relative_attention_num_buckets={cfg.relative_attention_num_buckets}: MPNet buckets "
                f"relative positions into {BUCKETS} (as transformers does); a checkpoint with another "
                "count would not run there either"
            )
        return cfg


def relative_buckets(relative: np.ndarray) -> np.ndarray:
    """MPNet's bucket of each relative position `key - query`, as transformers computes it (in
    float32, truncated toward zero): half the buckets for keys before the query, half after; in
    each half, exact below 8 apart, then log-spaced up to `MAX_DISTANCE`."""
    n = -relative.astype(np.int64)
    half = BUCKETS // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    far = np.maximum(n, exact).astype(np.float32)  # the log branch is only taken from `exact` on
    scaled = np.log(far / np.float32(exact)) / np.float32(math.log(MAX_DISTANCE / exact))
    large = exact + (scaled * np.float32(half - exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return ret + np.where(n < exact, n, large)


class MPNetEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.padding_idx = cfg.pad_token_id
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def __call__(self, input_ids: mx.array) -> mx.array:
        positions = mx.arange(input_ids.shape[1]) + (self.padding_idx + 1)
        return self.norm(self.word_embeddings(input_ids) + self.position_embeddings(positions))


class MPNetEncoder(BertEncoder):
    """Token ids + attention mask -> last-layer hidden states (batch, length, hidden)."""

    @staticmethod
    def make_embeddings(cfg: BertConfig) -> nn.Module:
        return MPNetEmbeddings(cfg)

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.relative_attention_bias = nn.Embedding(BUCKETS, cfg.num_attention_heads)
        # Buckets of every `key - query` a sequence can hold: offsets -(P-1) .. P-1.
        span = cfg.max_position_embeddings
        self._buckets = mx.array(relative_buckets(np.arange(-(span - 1), span)).astype(np.int32))

    def attention_bias(self, attention_mask: mx.array, dtype: mx.Dtype) -> mx.array:
        """The padding mask plus the relative position bias: (batch, heads, length, length)."""
        length = attention_mask.shape[1]
        offsets = mx.arange(length)[None, :] - mx.arange(length)[:, None]  # key - query
        buckets = self._buckets[offsets + (self.config.max_position_embeddings - 1)]
        bias = self.relative_attention_bias(buckets).astype(dtype).transpose(2, 0, 1)[None]
        return super().attention_bias(attention_mask, dtype) + bias


# Checkpoint name (after stripping an `mpnet.` prefix) -> name in this module tree.
_RENAMES: list[tuple[str, str]] = [
    (r"^embeddings\.LayerNorm\.(weight|bias)$", r"embeddings.norm.\1"),
    (r"^embeddings\.(word|position)_embeddings\.weight$", r"embeddings.\1_embeddings.weight"),
    (r"^encoder\.relative_attention_bias\.weight$", "relative_attention_bias.weight"),
    (r"^encoder\.layer\.(\d+)\.attention\.attn\.q\.", r"layers.\1.attention.query."),
    (r"^encoder\.layer\.(\d+)\.attention\.attn\.k\.", r"layers.\1.attention.key."),
    (r"^encoder\.layer\.(\d+)\.attention\.attn\.v\.", r"layers.\1.attention.value."),
    (r"^encoder\.layer\.(\d+)\.attention\.attn\.o\.", r"layers.\1.attention.out."),
    (r"^encoder\.layer\.(\d+)\.attention\.LayerNorm\.", r"layers.\1.attention_norm."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.intermediate."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.output."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.output_norm."),
]
# Checkpoint tensors a sentence encoder does not use (the pooler, a masked-LM head, a buffer).
_DROPPED = re.compile(r"^(pooler\.|lm_head\.|embeddings\.position_ids$)")


def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Map Hugging Face MPNet checkpoint names to this encoder's names; unknown names are errors."""
    return fuse_qkv(rename(weights, "mpnet.", _RENAMES, _DROPPED, "an MPNetModel"))
