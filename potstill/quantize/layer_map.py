"""The layer map: how much each transformer layer (or block of layers) of a teacher minds being
crushed to 4 bits, and the layer-wise scheme that this suggests under a bits-per-weight budget.

Each probe quantizes one block to 4 bits, keeps every other layer float16, embeds the screen's
sentences and compares them with the float teacher (`screen.fidelity`). A block's damage is
1 - mean cosine. Quantization noise from different layers adds up roughly independently, and its
variance falls 4x per extra bit, so a block stored at b bits is predicted to cost
damage_4 * 4 ** (4 - b) (float16: nothing). The proposal is the assignment of bits to blocks with
the least predicted damage whose bits per weight fit the target: exact, by dynamic programming over
the blocks in quarter-bit steps. Schemes are in `schemes.py`, the screen in `screen.py`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from potstill.quantize import schemes
from potstill.quantize.screen import Fidelity, encode_timed, fidelity
from potstill.teacher.teacher import Teacher

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

PROBE_BITS = 4
AFFINE_OPTIONS = (4, 5, 6, 8, schemes.FLOAT_BITS)  # bits a block may get in a proposal
MX_OPTIONS = (4, 8, schemes.FLOAT_BITS)  # mxfp4, mxfp8, float16


@dataclass(frozen=True)
class Probe:
    """Layers `start`..`end` at 4 bits, everything else float16: how far the embeddings moved."""

    start: int
    end: int
    fidelity: Fidelity

    @property
    def damage(self) -> float:
        return max(1.0 - self.fidelity.mean_cos, 0.0)

    def label(self) -> str:
        return f"{self.start}" if self.start == self.end else f"{self.start}-{self.end}"


def blocks(num_layers: int, block_size: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) layer blocks of `block_size` (the last may be shorter)."""
    if not 1 <= block_size <= num_layers:
        raise ValueError(f"block_size={block_size} should be in 1..{num_layers} (the teacher's layers)")
    return [(s, min(s + block_size, num_layers) - 1) for s in range(0, num_layers, block_size)]


def probe_block(start: int, end: int, num_layers: int, setting: schemes.Setting) -> dict[str, Any]:
    """The quantization block of one probe: layers start..end at the probe setting, others float."""
    rules = [(start, end, setting.bits)]
    rules += [(a, b, schemes.FLOAT_BITS) for a, b in ((0, start - 1), (end + 1, num_layers - 1)) if a <= b]
    scheme = schemes.Scheme("probe", setting, tuple(schemes.LayerRule(a, b, c) for a, b, c in rules))
    return scheme.block(num_layers)


def run_probes(
    teacher_id: str,
    reference: np.ndarray,
    texts: Sequence[str],
    *,
    num_layers: int,
    block_size: int = 1,
    setting: schemes.Setting,
    batch_size: int = 64,
    max_seq_length: int | None = None,
) -> list[Probe]:
    """Load the teacher once per block with that block at the probe setting, and screen it."""
    probes = []
    for start, end in blocks(num_layers, block_size):
        block = probe_block(start, end, num_layers, setting)
        teacher = Teacher.load(teacher_id, quantization=block, max_seq_length=max_seq_length)
        got = encode_timed(teacher, texts, batch_size)
        probes.append(Probe(start, end, fidelity(reference, got.emb)))
        f = probes[-1].fidelity
        logger.info(
            "layers %s at %s: mean cos %.5f, top-10 %.4f",
            probes[-1].label(),
            setting.label(),
            f.mean_cos,
            f.top10,
        )
    return probes


def setting_bpw(setting: schemes.Setting) -> float:
    """Stored bits per weight of a setting: float16 16; affine b + 32/g (float16 scale and bias
    per group); mx b + 8/32 (one 8-bit scale per group of 32)."""
    if setting.is_float:
        return float(schemes.FLOAT_BITS)
    overhead = 8 if setting.mode in schemes.MX_MODES else 32
    return setting.bits + overhead / setting.group_size


@dataclass(frozen=True)
class Proposal:
    """A layer table under a bits-per-weight target, with its predicted damage."""

    rules: tuple[schemes.LayerRule, ...]
    bits_per_weight: float  # of the Linear weights, as `bits.count_bits` counts it
    predicted_damage: float
    target: float

    def table(self) -> list[dict[str, Any]]:
        return [{"range": r.label(), "bits": r.bits} for r in self.rules]

    def toml(self) -> str:
        """The proposal as a recipe `[quantize]` table."""
        rows = ", ".join(f'{{range = "{t["range"]}", bits = {t["bits"]}}}' for t in self.table())
        return f'[quantize]\nscheme = "uniform"\nlayers = [{rows}]\n'


def propose(
    probes: Sequence[Probe],
    target_bits: float,
    default: schemes.Setting,
    options: Sequence[int] | None = None,
) -> Proposal:
    """The per-block bits with the least predicted damage whose mean bits per weight fit the target."""
    options = tuple(options or (MX_OPTIONS if default.mode in schemes.MX_MODES else AFFINE_OPTIONS))
    check_target(target_bits, default, options)
    settings = [schemes.rule_setting(b, default) for b in options]
    costs = [round(4 * setting_bpw(s)) for s in settings]  # quarter bits per weight, exact for every setting
    sizes = [p.end - p.start + 1 for p in probes]  # layers per block; every BERT layer has the same Linears
    budget = math.floor(4 * target_bits * sum(sizes) + 1e-9)
    # best[c] = (least damage, choices) over the blocks so far with total cost c.
    best: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for probe, size in zip(probes, sizes, strict=True):
        step: dict[int, tuple[float, tuple[int, ...]]] = {}
        for cost, (damage, picks) in best.items():
            for j, b in enumerate(options):
                c = cost + costs[j] * size
                d = damage + predicted(probe.damage, b)
                if c <= budget and (c not in step or d < step[c][0]):
                    step[c] = (d, (*picks, j))
        best = step
    cost, (damage, picks) = min(best.items(), key=lambda kv: (kv[1][0], kv[0]))
    rules = [schemes.LayerRule(p.start, p.end, options[j]) for p, j in zip(probes, picks, strict=True)]
    return Proposal(tuple(_merge(rules)), cost / 4 / sum(sizes), damage, target_bits)


def check_target(target_bits: float, default: schemes.Setting, options: Sequence[int] | None = None) -> None:
    """Refuse a target no proposal can meet (below the cheapest option) or that needs no quantization."""
    if target_bits >= schemes.FLOAT_BITS:
        raise ValueError(f"target_bits={target_bits} leaves every layer float16; give a target below 16")
    options = tuple(options or (MX_OPTIONS if default.mode in schemes.MX_MODES else AFFINE_OPTIONS))
    cheapest = min((schemes.rule_setting(b, default) for b in options), key=setting_bpw)
    if target_bits < setting_bpw(cheapest):
        raise ValueError(
            f"target_bits={target_bits} is below the cheapest scheme ({setting_bpw(cheapest)} bits per "
            f"weight, every layer at {cheapest.label()}); raise the target"
        )


def predicted(damage_4: float, bits: int) -> float:
    """Predicted damage of a block at `bits` from its measured damage at 4 bits."""
    return 0.0 if bits == schemes.FLOAT_BITS else damage_4 * 4.0 ** (PROBE_BITS - bits)


def _merge(rules: list[schemes.LayerRule]) -> list[schemes.LayerRule]:
    """Join neighbouring ranges with the same bits."""
    out: list[schemes.LayerRule] = []
    for r in rules:
        if out and out[-1].bits == r.bits and out[-1].end + 1 == r.start:
            out[-1] = schemes.LayerRule(out[-1].start, r.end, r.bits)
        else:
            out.append(r)
    return out


def map_dict(
    probes: Sequence[Probe],
    proposal: Proposal,
    block: dict[str, Any],
    measured: Fidelity,
    probe: schemes.Setting,
) -> dict[str, Any]:
    """The map and its proposal as JSON-able data (`layer_map.json`)."""
    return {
        "probe": probe.label(),
        "probes": [
            {"start": p.start, "end": p.end, "damage": p.damage, **p.fidelity.to_dict()} for p in probes
        ],
        "proposal": {
            "target_bits": proposal.target,
            "bits_per_weight": proposal.bits_per_weight,
            "predicted_damage": proposal.predicted_damage,
            "layers": proposal.table(),
            "quantization": block,
            "measured": measured.to_dict(),
        },
    }


def read_probes(data: dict[str, Any]) -> list[Probe]:
    """The probes of a `layer_map.json` (to propose under another target without re-probing)."""
    keys = ("sentences", "mean_cos", "min_cos", "top1", "top10")
    return [Probe(p["start"], p["end"], Fidelity(**{k: p[k] for k in keys})) for p in data["probes"]]


def plot(probes: Sequence[Probe], path: Path, title: str, proposal: Proposal | None = None) -> Path:
    """Bars of each block's damage at 4 bits (log scale) and its top-10 retention, as a PNG."""
    import matplotlib  # lazy: the optional eval extra

    matplotlib.use("Agg")  # files only: no display on servers
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache notices
    import matplotlib.pyplot as plt

    labels = [p.label() for p in probes]
    x = list(range(len(probes)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.4 * len(probes) + 3.0), 4.2))
    bits = {i: r.bits for r in (proposal.rules if proposal else ()) for i in range(r.start, r.end + 1)}
    colors = {4: "#d62728", 5: "#ff7f0e", 6: "#bcbd22", 8: "#2ca02c", 16: "#1f77b4"}
    ax.bar(
        x,
        [max(p.damage, 1e-9) for p in probes],
        color=[colors.get(bits.get(p.start, 0), "#7f7f7f") for p in probes],
    )
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_xlabel("layer" if all(p.start == p.end for p in probes) else "layers")
    ax.set_ylabel("1 - mean cosine (bars)")
    twin = ax.twinx()
    (line,) = twin.plot(x, [p.fidelity.top10 for p in probes], "k.-")
    twin.set_ylabel("top-10 neighbour retention (line)")
    handles: list[Any] = [line]
    names = ["top-10 retention"]
    if proposal:
        used = sorted(set(bits.values()))
        handles += [plt.Rectangle((0, 0), 1, 1, color=colors.get(b, "#7f7f7f")) for b in used]
        names += [f"proposal: {'float16' if b == schemes.FLOAT_BITS else f'{b}-bit'}" for b in used]
    # Below the axes, so it never hides a bar.
    ax.legend(
        handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(len(names), 3), fontsize=8
    )
    ax.set_title(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
