"""Quantized teacher weights: schemes, the config block they become, bits counting, CPU execution.

A scheme is a small table, layer range -> bits, over the encoder's transformer layers; layers the
table leaves out get the scheme's default bits. Named schemes expand to such a table relative to
the layer count, with "ends" = the first and the last quarter of the layers (rounded half up,
at least one layer each): `uniform` (every layer at `bits`), `crush_middle` (`bits` in the middle,
float16 ends), `protect_late` (`bits` up to the last quarter, which stays float16) and `3tier`
(`bits` in the middle, 8-bit ends). Bits 16 in a table means float16 (not quantized). Embeddings
and LayerNorms stay float16 unless `embeddings_bits` asks to quantize the word and position
embeddings.

A scheme becomes `config.json["quantization"]` (mlx-lm's convention): global `bits`,
`group_size`, `mode`, plus per-module overrides keyed by module path (`{"bits", "group_size",
"mode"}`, or `false` for float), so loading a saved folder re-applies exactly what was saved.
Quantization starts from float16 weights, so scales and biases are float16 too: a saved folder
holds every float tensor as float16 and loads back to the same numbers.

On CPU, MLX's quantized matmul kernel is ~2 GFLOP/s (FINDINGS.md), so quantized layers compute
`x @ dequantize(w).T` through the fast BLAS instead; the quantization still decides the numbers.
GPU backends keep MLX's quantized kernels. The fidelity screen is in `screen.py`, the per-layer
sensitivity map in `layer_map.py`.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

SUPPORTED_BITS = (2, 3, 4, 5, 6, 8)
SUPPORTED_GROUPS = (32, 64, 128)
FLOAT_BITS = 16  # a table entry with 16 bits keeps its layers in float16
MX_MODES = {"mxfp4": 4, "mxfp8": 8}  # MLX's microscaling formats: fixed bits, group size 32
MODES = ("affine", *MX_MODES)
SCHEMES = ("uniform", "crush_middle", "protect_late", "3tier")
LAYER_LINEARS = ("attention.qkv", "attention.out", "intermediate", "output")
EMBEDDING_PATHS = ("embeddings.word_embeddings", "embeddings.position_embeddings")
_SETTING_KEYS = ("bits", "group_size", "mode")


class SchemeError(ValueError):
    """A quantization scheme that cannot be applied; the message names the bad value and the fix."""


@dataclass(frozen=True)
class Setting:
    """How one module is stored: `bits` 16 is float16, else quantized with group size and mode."""

    bits: int
    group_size: int = 64
    mode: str = "affine"

    @property
    def is_float(self) -> bool:
        return self.bits == FLOAT_BITS

    def entry(self) -> dict[str, Any] | bool:
        """The per-module entry of a quantization block (False: keep float)."""
        return (
            False if self.is_float else {"bits": self.bits, "group_size": self.group_size, "mode": self.mode}
        )

    def label(self) -> str:
        if self.is_float:
            return "fp16"
        return self.mode if self.mode in MX_MODES else f"{self.bits}b/g{self.group_size}"


def make_setting(bits: int | None, group_size: int | None = None, mode: str = "affine") -> Setting:
    """A checked setting; `None` picks the mode's defaults (affine: 4 bits, group 64; mx: 32)."""
    if mode not in MODES:
        raise SchemeError(f"mode={mode!r} is not supported; use one of {MODES}")
    if mode in MX_MODES:
        want = MX_MODES[mode]
        bits = want if bits is None else bits
        group_size = 32 if group_size is None else group_size
        if bits not in (want, FLOAT_BITS) or group_size != 32:
            raise SchemeError(
                f"mode={mode} stores {want} bits in groups of 32 (got bits={bits}, group_size={group_size}); "
                f"use bits={want} group_size=32, or mode=affine"
            )
        return Setting(bits, group_size, mode)
    bits = 4 if bits is None else bits
    group_size = 64 if group_size is None else group_size
    if bits not in (*SUPPORTED_BITS, FLOAT_BITS):
        raise SchemeError(f"bits={bits} is not supported; use one of {SUPPORTED_BITS} (or 16: float16)")
    if group_size not in SUPPORTED_GROUPS:
        raise SchemeError(f"group_size={group_size} is not supported; use one of {SUPPORTED_GROUPS}")
    return Setting(bits, group_size, mode)


def uniform_block(bits: int, group_size: int = 64, mode: str = "affine") -> dict[str, Any]:
    """The `quantization` config block of a uniform scheme over all Linear layers."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits} is not supported; use one of {SUPPORTED_BITS}")
    if group_size not in SUPPORTED_GROUPS:
        raise ValueError(f"group_size={group_size} is not supported; use one of {SUPPORTED_GROUPS}")
    return {"bits": bits, "group_size": group_size, "mode": mode}


# ------------------------------------------------------------------------------------- schemes
@dataclass(frozen=True)
class LayerRule:
    """Layers `start`..`end` (inclusive) are stored with `bits` (16: float16)."""

    start: int
    end: int
    bits: int

    def label(self) -> str:
        return f"{self.start}" if self.start == self.end else f"{self.start}-{self.end}"


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_rule(item: Any) -> LayerRule:
    """A table entry: `{range = "2-5", bits = 4}` (a recipe) or `"2-5:4"` (the command line)."""
    if isinstance(item, str):
        rng, sep, bits = item.partition(":")
        if not sep:
            raise SchemeError(f"layer entry {item!r} should be RANGE:BITS, e.g. 2-5:4 or 0:16")
        item = {"range": rng, "bits": bits}
    if not isinstance(item, dict) or set(item) != {"range", "bits"}:
        raise SchemeError(f'layer entry {item!r} should be {{range = "2-5", bits = 4}}')
    m = _RANGE.match(str(item["range"]))
    if not m:
        raise SchemeError(f"layer range {item['range']!r} should be N or N-M, e.g. 2-5")
    start, end = int(m.group(1)), int(m.group(2) or m.group(1))
    if end < start:
        raise SchemeError(f"layer range {item['range']!r} ends before it starts; write {end}-{start}")
    try:
        layer_bits = int(item["bits"])
    except (TypeError, ValueError) as e:
        raise SchemeError(f"bits={item['bits']!r} in layer entry {item!r} should be an integer") from e
    return LayerRule(start, end, layer_bits)


def ends(num_layers: int) -> int:
    """Layers at each end of the stack: a quarter, rounded half up, at least one."""
    return max(1, (num_layers + 2) // 4)


def named_rules(name: str, num_layers: int, bits: int) -> list[LayerRule]:
    """The table a named scheme stands for on `num_layers` layers (`bits`: the crushed layers)."""
    q, last = ends(num_layers), num_layers - 1
    tables = {
        "uniform": [(0, last, bits)],
        "crush_middle": [(0, q - 1, FLOAT_BITS), (q, last - q, bits), (last - q + 1, last, FLOAT_BITS)],
        "protect_late": [(0, last - q, bits), (last - q + 1, last, FLOAT_BITS)],
        "3tier": [(0, q - 1, 8), (q, last - q, bits), (last - q + 1, last, 8)],
    }
    if name not in tables:
        raise SchemeError(f"scheme={name!r} is not known; use one of {SCHEMES} or a layers table")
    return [LayerRule(a, b, c) for a, b, c in tables[name] if a <= b]


def check_rules(rules: Sequence[LayerRule], num_layers: int, setting: Setting) -> None:
    """Refuse overlapping ranges, layers the teacher lacks, and bits the mode cannot store."""
    for r in rules:
        if r.end >= num_layers:
            raise SchemeError(
                f"layer range {r.label()} is out of range: the teacher has {num_layers} layers "
                f"(0-{num_layers - 1}); use layers up to {num_layers - 1}"
            )
        rule_setting(r.bits, setting)  # raises on bits the mode cannot store
    ordered = sorted(rules, key=lambda r: r.start)
    for a, b in itertools.pairwise(ordered):
        if b.start <= a.end:
            raise SchemeError(f"layer ranges {a.label()} and {b.label()} overlap; give each layer one entry")


def rule_setting(bits: int, default: Setting) -> Setting:
    """The setting of layers a table gives `bits`: the default's group size and mode (in an mx
    mode, 4 and 8 bits are mxfp4 and mxfp8, so 3tier works there too)."""
    if default.mode in MX_MODES and bits != FLOAT_BITS:
        mode = next((m for m, b in MX_MODES.items() if b == bits), None)
        if mode is None:
            raise SchemeError(
                f"bits={bits} cannot be stored in mode={default.mode}; mx modes store 4 (mxfp4) or "
                "8 (mxfp8) bits, or 16 (float16): use those or mode=affine"
            )
        return Setting(bits, 32, mode)
    return make_setting(bits, default.group_size, default.mode)


@dataclass(frozen=True)
class Scheme:
    """A quantization scheme: default setting, a layer table over it, and the embeddings' setting."""

    name: str
    default: Setting
    rules: tuple[LayerRule, ...] = ()
    embeddings: Setting | None = None  # None: float16

    def layer_settings(self, num_layers: int) -> list[Setting]:
        """The setting of each transformer layer."""
        check_rules(self.rules, num_layers, self.default)
        out = [self.default] * num_layers
        for r in self.rules:
            for i in range(r.start, r.end + 1):
                out[i] = rule_setting(r.bits, self.default)
        return out

    def table(self, num_layers: int) -> list[dict[str, Any]]:
        """The scheme as a recipe table, one entry per run of equal layers."""
        rows: list[dict[str, Any]] = []
        for i, s in enumerate(self.layer_settings(num_layers)):
            if rows and rows[-1]["bits"] == s.bits:
                rows[-1]["range"] = f"{rows[-1]['range'].split('-')[0]}-{i}"
            else:
                rows.append({"range": str(i), "bits": s.bits})
        return rows

    def block(self, num_layers: int) -> dict[str, Any]:
        """The `quantization` config block (mlx-lm's convention) on `num_layers` layers."""
        settings = self.layer_settings(num_layers)
        quantized = [s for s in settings if not s.is_float]
        if not quantized:
            raise SchemeError(
                f"scheme {self.name} quantizes none of the {num_layers} layers; lower some layer's bits below 16"
            )
        # The most common quantized setting is the global one; every other layer says its own.
        top = Counter(quantized).most_common(1)[0][0]
        block: dict[str, Any] = {"bits": top.bits, "group_size": top.group_size, "mode": top.mode}
        for i, s in enumerate(settings):
            if s != top:
                block.update({f"layers.{i}.{name}": s.entry() for name in LAYER_LINEARS})
        if self.embeddings is not None and not self.embeddings.is_float:
            block.update({path: self.embeddings.entry() for path in EMBEDDING_PATHS})
        return block


def make_scheme(
    name: str = "uniform",
    *,
    bits: int | None = None,
    group_size: int | None = None,
    mode: str = "affine",
    layers: Sequence[Any] = (),
    embeddings_bits: int | None = None,
    num_layers: int,
) -> Scheme:
    """A named scheme, or a layer table over the uniform default, checked against `num_layers`."""
    default = make_setting(bits, group_size, mode)
    if default.is_float:
        raise SchemeError("bits=16 would quantize nothing; use a bit width from the table's layers instead")
    if layers and name != "uniform":
        raise SchemeError(
            f"give scheme={name!r} or a layers table, not both (a table applies to scheme=uniform)"
        )
    rules = [parse_rule(item) for item in layers] if layers else named_rules(name, num_layers, default.bits)
    emb = make_setting(embeddings_bits, default.group_size, mode) if embeddings_bits is not None else None
    scheme = Scheme("table" if layers else name, default, tuple(rules), emb)
    scheme.block(num_layers)  # checks ranges and bits, and that something gets quantized
    return scheme


def layer_bits(block: dict[str, Any], num_layers: int) -> list[int]:
    """Bits of each layer's Linear weights under a block (16: float); mixed layers show the most."""
    out = []
    for i in range(num_layers):
        bits = [_entry_bits(block, f"layers.{i}.{name}") for name in LAYER_LINEARS]
        out.append(max(bits))
    return out


def _entry_bits(block: dict[str, Any], path: str) -> int:
    entry = block.get(path)
    if entry is False:
        return FLOAT_BITS
    return int(entry["bits"]) if isinstance(entry, dict) and "bits" in entry else int(block.get("bits", 4))


# --------------------------------------------------------------------------------- applying
class CpuQuantizedLinear(nn.QuantizedLinear):
    """A `QuantizedLinear` that computes through its dequantized weight (fast on CPU BLAS)."""

    def __call__(self, x: mx.array) -> mx.array:
        w = mx.dequantize(
            self["weight"],
            self["scales"],
            self.get("biases"),
            group_size=self.group_size,
            bits=self.bits,
            mode=self.mode,
        )
        # mx modes dequantize to bfloat16, whose CPU matmul is slow: compute in the input's dtype.
        y = x @ w.astype(x.dtype).T
        return y + self["bias"] if "bias" in self else y


def apply(model: nn.Module, block: dict[str, Any]) -> None:
    """Quantize `model` in place as a `quantization` config block says.

    Only Linear layers are quantized unless a per-module entry names another module; an entry
    `{path: false}` keeps that module in float; an entry's missing keys come from the global ones.
    """
    glob = {
        "bits": int(block.get("bits", 4)),
        "group_size": int(block.get("group_size", 64)),
        "mode": str(block.get("mode", "affine")),
    }
    modules = dict(model.named_modules())
    unknown = [k for k, v in block.items() if (v is False or isinstance(v, dict)) and k not in modules]
    if unknown:
        raise SchemeError(f"quantization entries name no module of this model: {unknown[:5]}")

    def predicate(path: str, module: nn.Module) -> bool | dict[str, Any]:
        entry = block.get(path)
        if entry is False:
            return False
        if isinstance(entry, dict):
            return {k: entry.get(k, glob[k]) for k in _SETTING_KEYS}
        return isinstance(module, nn.Linear)

    try:
        nn.quantize(model, class_predicate=predicate, **glob)  # type: ignore[arg-type]
    except ValueError as e:  # MLX's message names the unsupported bits, group size or mode
        setting = " ".join(f"{k}={v}" for k, v in glob.items())
        raise SchemeError(f"cannot quantize with {setting} (or a per-layer setting): {e}") from e


def quantize_model(model: nn.Module, block: dict[str, Any], dtype: mx.Dtype = mx.float32) -> None:
    """Quantize a float model as a saved folder would hold it: from float16 weights (so scales,
    biases and the float layers are float16 numbers), then computing in `dtype`."""
    model.set_dtype(mx.float16)
    apply(model, block)
    model.set_dtype(dtype)


def use_cpu_kernels(model: nn.Module) -> int:
    """Make every QuantizedLinear compute through dequantized weights; returns how many."""
    count = 0
    for _, module in model.named_modules():
        if type(module) is nn.QuantizedLinear:
            # Same parameters and attributes, another __call__: swapping the class keeps the
            # weights in place (no re-quantization, no copy).
            module.__class__ = CpuQuantizedLinear
            count += 1
    return count


# ------------------------------------------------------------------------------ bits counting
@dataclass(frozen=True)
class BitsReport:
    """Stored bits per weight: the encoder's Linear weights (quantization scales and biases
    included; Linear bias vectors and LayerNorms left out) and, on their own, the embeddings."""

    linear_weights: int
    linear_bits: int
    embedding_weights: int
    embedding_bits: int

    @property
    def linear_bpw(self) -> float:
        return self.linear_bits / max(self.linear_weights, 1)

    @property
    def embedding_bpw(self) -> float:
        return self.embedding_bits / max(self.embedding_weights, 1)


def _stored_bits(a: mx.array) -> int:
    """Bits of an array as saved: every float tensor is float16 in a quantized folder."""
    return a.size * (16 if mx.issubdtype(a.dtype, mx.floating) else 8 * a.itemsize)


def _module_bits(module: nn.Module) -> tuple[int, int]:
    """(weights it stands for, stored bits of weight + scales + biases) of a Linear/Embedding."""
    w = module["weight"]
    if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
        count = w.shape[0] * w.shape[1] * 32 // module.bits
        extra = [module["scales"], *([module["biases"]] if "biases" in module else [])]
        return count, _stored_bits(w) + sum(_stored_bits(a) for a in extra)
    return w.size, _stored_bits(w)


def count_bits(model: nn.Module) -> BitsReport:
    """Bits per weight of a (quantized) encoder; arrays are not evaluated, so a lazily built model
    costs nothing to count."""
    lin = [0, 0]
    emb = [0, 0]
    for path, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.QuantizedLinear)):
            target = lin
        elif isinstance(module, (nn.Embedding, nn.QuantizedEmbedding)) and path.startswith("embeddings."):
            target = emb
        else:
            continue
        n, bits = _module_bits(module)
        target[0] += n
        target[1] += bits
    return BitsReport(lin[0], lin[1], emb[0], emb[1])


def block_bits(config: Any, block: dict[str, Any]) -> BitsReport:
    """Bits per weight a block gives an encoder of `config` (a `BertConfig`), without weights."""
    from potstill.distill.bert import BertEncoder

    model = BertEncoder(config)  # lazy: MLX computes no random init until evaluated
    model.set_dtype(mx.float16)
    apply(model, block)
    return count_bits(model)
