"""The quantize stage: a float teacher -> a quantized MLX checkpoint (WORKDIR/teachers/NAME/ under
`potstill run`, which then hands it to every later stage as the teacher).

`potstill quantize` also runs the fidelity screen (`--screen`: against the float teacher) and the
per-layer sensitivity map (`--layer-map`: each layer's damage and a proposed scheme)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from potstill import manifest
from potstill.config import ConfigError, config_hash, to_dict
from potstill.contract import Context, Stage, short_hash, slug
from potstill.quantize import layer_map, schemes, screen
from potstill.quantize.bits import block_bits
from potstill.quantize.config import QuantizeConfig
from potstill.quantize.screen import ScreenResult
from potstill.teacher import checkpoint
from potstill.teacher.bert import BertConfig
from potstill.teacher.encoders import config_from_dict
from potstill.teacher.teacher import Teacher

logger = logging.getLogger(__name__)

SCREEN_JSON = "screen.json"
MAP_JSON, MAP_PNG, PROPOSAL_TOML = "layer_map.json", "layer_map.png", "proposal.toml"


def teacher_config(teacher: str) -> BertConfig:
    """The teacher's encoder config (BERT or MPNet), read before loading its weights."""

    folder = checkpoint.resolve(teacher)
    if not (folder / "config.json").is_file():
        raise checkpoint.TeacherLoadError(f"{folder} has no config.json; is this a model folder?")
    return config_from_dict(checkpoint.read_json(folder / "config.json"))


def make_scheme(cfg: QuantizeConfig, num_layers: int) -> schemes.Scheme:
    """The configured scheme on `num_layers` layers; scheme errors become config errors."""
    try:
        return schemes.make_scheme(
            cfg.scheme,
            bits=cfg.bits,
            group_size=cfg.group_size,
            mode=cfg.mode,
            layers=cfg.layers,
            embeddings_bits=cfg.embeddings_bits,
            num_layers=num_layers,
        )
    except schemes.SchemeError as e:
        raise ConfigError(str(e)) from e


def describe(scheme: schemes.Scheme, block: dict[str, Any], bert: BertConfig) -> list[str]:
    """Lines: the layer table, bits per Linear weight, and the embeddings on their own line."""
    bits = block_bits(bert, block)
    table = ", ".join(f"{r['range']}:{r['bits']}" for r in scheme.table(bert.num_hidden_layers))
    emb = scheme.embeddings.label() if scheme.embeddings else "fp16"
    return [
        f"scheme {scheme.name} ({scheme.default.label()}): layers {table}",
        f"linear weights: {bits.linear_bpw:.3f} bits/weight ({bits.linear_weights:,} weights, scales and biases included)",
        f"embeddings: {bits.embedding_bpw:.3f} bits/weight ({bits.embedding_weights:,} weights, {emb})",
    ]


def folder_mb(folder: Path) -> float:
    """Size of a folder's files in MB (10^6 bytes)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def save(teacher: Teacher, cfg: QuantizeConfig, scheme: schemes.Scheme, extra_files: dict[str, str]) -> Path:
    """Write the quantized checkpoint (plus `extra_files`) and its manifest."""
    out = Path(cfg.out)
    teacher.save(out)
    for name, text in extra_files.items():
        (out / name).write_text(text, encoding="utf-8")
    files = [p for p in out.rglob("*") if p.is_file() and p.name != manifest.MANIFEST]
    scheme_info = {"name": scheme.name, "layers": scheme.table(teacher.model.config.num_hidden_layers)}
    manifest.write(
        out,
        "quantize",
        to_dict(cfg),
        config_hash(cfg),
        [manifest.Input.of(teacher.name)],
        files,
        extra={"scheme": scheme_info, "teacher": {"source": teacher.name}},
    )
    return out


def quantize_teacher(cfg: QuantizeConfig) -> list[str]:
    """Quantize (and with `screen`, compare) the teacher; write it to `cfg.out` when set.
    Returns the report lines."""

    bert = teacher_config(cfg.teacher)
    scheme = make_scheme(cfg, bert.num_hidden_layers)
    block = scheme.block(bert.num_hidden_layers)
    lines = describe(scheme, block, bert)
    extra: dict[str, str] = {}
    quantized = Teacher.load(cfg.teacher, quantization=block, max_seq_length=cfg.max_seq_length)
    if cfg.screen:
        result = run_screen(cfg, quantized)
        lines += result.lines()
        extra[SCREEN_JSON] = json.dumps({"block": block, **result.to_dict()}, indent=2) + "\n"
    if cfg.out:
        out = save(quantized, cfg, scheme, extra)
        lines.append(f"size on disk: {folder_mb(out):.1f} MB ({out})")
    return lines


def run_screen(cfg: QuantizeConfig, quantized: Teacher) -> ScreenResult:
    """The screen of `quantized` against the float teacher on the configured sentences."""

    retrieval = screen.retrieval_task(cfg.retrieval, cfg.retrieval_docs, cfg.seed) if cfg.retrieval else None
    texts = screen.read_sentences(cfg.corpus, cfg.sentences)
    float_teacher = Teacher.load(cfg.teacher, max_seq_length=cfg.max_seq_length)
    return screen.screen(float_teacher, quantized, texts, retrieval=retrieval, batch_size=cfg.batch_size)


def run_layer_map(cfg: QuantizeConfig) -> list[str]:
    """Probe each block at 4 bits, draw the map, propose a scheme under `target_bits`, check it.
    Returns the report lines."""
    if not cfg.out:
        raise ConfigError("--layer-map needs --out DIR (for layer_map.png, layer_map.json, proposal.toml)")

    bert = teacher_config(cfg.teacher)
    default = make_scheme(cfg, bert.num_hidden_layers).default
    probe = schemes.rule_setting(layer_map.PROBE_BITS, default)
    try:
        layer_map.check_target(cfg.target_bits, default)  # before minutes of probing
    except ValueError as e:
        raise ConfigError(str(e)) from e
    texts = screen.read_sentences(cfg.corpus, cfg.sentences)
    float_teacher = Teacher.load(cfg.teacher, max_seq_length=cfg.max_seq_length)
    reference = screen.encode_timed(float_teacher, texts, cfg.batch_size)
    del float_teacher
    probes = layer_map.run_probes(
        cfg.teacher,
        reference.emb,
        texts,
        num_layers=bert.num_hidden_layers,
        block_size=cfg.block_size,
        setting=probe,
        batch_size=cfg.batch_size,
        max_seq_length=cfg.max_seq_length,
    )
    proposal = layer_map.propose(probes, cfg.target_bits, default)
    scheme = schemes.Scheme("layer-map", default, proposal.rules)
    block = scheme.block(bert.num_hidden_layers)
    check = Teacher.load(cfg.teacher, quantization=block, max_seq_length=cfg.max_seq_length)
    measured = screen.fidelity(reference.emb, screen.encode_timed(check, texts, cfg.batch_size).emb)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    title = (
        f"{Path(cfg.teacher).name}: one block at a time at {probe.label()}, the rest float16 ({len(texts)} sentences)\n"
        f"proposal under {cfg.target_bits:g} bits/weight: {proposal.bits_per_weight:.2f} (colours)"
    )
    files = [layer_map.plot(probes, out / MAP_PNG, title, proposal)]
    data = layer_map.map_dict(probes, proposal, block, measured, probe)
    files.append(_write(out / MAP_JSON, json.dumps(data, indent=2) + "\n"))
    files.append(_write(out / PROPOSAL_TOML, proposal.toml()))
    manifest.write(
        out, "quantize-layer-map", to_dict(cfg), config_hash(cfg), [manifest.Input.of(cfg.teacher)], files
    )
    lines = [
        f"layers {p.label():>5} at {probe.label()}: 1 - mean cos {p.damage:.5f}, top-10 retention {p.fidelity.top10:.4f}"
        for p in probes
    ]
    lines += describe(scheme, block, bert)
    lines.append(
        f"proposal under {cfg.target_bits} bits/weight: mean cos {measured.mean_cos:.5f}, top-10 {measured.top10:.4f}"
    )
    lines.append(f"recipe table in {out / PROPOSAL_TOML}; map in {out / MAP_PNG}")
    return lines


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def wire(cfg: QuantizeConfig, ctx: Context) -> dict[str, Any]:
    """The quantized teacher's folder: WORKDIR/teachers/, named by teacher, scheme and settings."""
    digest = short_hash(cfg, ("out",), teacher=ctx.teacher)
    name = f"{slug(ctx.teacher.rstrip('/').split('/')[-1])}-{slug(cfg.scheme)}-{digest}"
    return {"teacher": ctx.teacher, "out": str(ctx.workdir / "teachers" / name)}


def run(cfg: QuantizeConfig) -> dict[str, Any]:
    for line in quantize_teacher(cfg):
        logger.info("%s", line)
    return manifest.read(cfg.out)


STAGE = Stage(
    name="quantize",
    config=QuantizeConfig,
    supplied=("teacher", "out", "screen", "layer_map"),
    wire=wire,
    run=run,
    optional=True,
    provides="teacher",
)
