"""Quantization schemes: layer tables and the `quantization` config block they become.

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

Applying a block to a model is `potstill.teacher.quantized` (loading needs it); the bits a block
costs are counted in `bits.py`, the fidelity screen is `screen.py`, the per-layer sensitivity map
`layer_map.py`.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from potstill.config import Choice
from potstill.teacher.quantized import SchemeError

SUPPORTED_BITS = (2, 3, 4, 5, 6, 8)
SUPPORTED_GROUPS = (32, 64, 128)
FLOAT_BITS = 16  # a table entry with 16 bits keeps its layers in float16
MX_MODES = {"mxfp4": 4, "mxfp8": 8}  # MLX's microscaling formats: fixed bits, group size 32


class Mode(Choice):
    """How quantized weights are stored: MLX's affine groups or its microscaling formats."""

    AFFINE = "affine"
    MXFP4 = "mxfp4"
    MXFP8 = "mxfp8"


class SchemeName(Choice):
    """Named layer tables; the ends are the first and the last quarter of the layers."""

    UNIFORM = "uniform"
    CRUSH_MIDDLE = "crush_middle"
    PROTECT_LATE = "protect_late"
    THREE_TIER = "3tier"


MODES = tuple(m.value for m in Mode)
SCHEMES = tuple(s.value for s in SchemeName)
LAYER_LINEARS = ("attention.qkv", "attention.out", "intermediate", "output")
EMBEDDING_PATHS = ("embeddings.word_embeddings", "embeddings.position_embeddings")


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
    mode = str(mode)  # a Mode member is stored as its plain value
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
    name, mode = str(name), str(mode)  # SchemeName / Mode members as their plain values
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
