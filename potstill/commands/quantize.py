"""`potstill quantize --teacher T --scheme S --out DIR` (a quantized MLX checkpoint),
`... --screen --corpus FILE [--retrieval TASK_DIR]` (its fidelity to the float teacher), or
`--layer-map --corpus FILE --out DIR` (each layer's sensitivity, and a proposed scheme)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from potstill import manifest
from potstill.commands.common import add_common, resolve_config
from potstill.config import ConfigError, QuantizeConfig, config_hash, to_dict
from potstill.distill import quantize

if TYPE_CHECKING:
    from potstill.distill.bert import BertConfig
    from potstill.distill.screen import ScreenResult
    from potstill.distill.teacher import Teacher

logger = logging.getLogger(__name__)

SCREEN_JSON = "screen.json"
MAP_JSON, MAP_PNG, PROPOSAL_TOML = "layer_map.json", "layer_map.png", "proposal.toml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", help="hub id or folder of the float teacher")
    parser.add_argument("--scheme", choices=quantize.SCHEMES, help="named scheme (default uniform)")
    parser.add_argument("--bits", type=int, help="bits of the crushed layers: 2 3 4 5 6 8 (default 4)")
    parser.add_argument("--group-size", type=int, dest="group_size", help="32, 64 or 128 (default 64)")
    parser.add_argument("--mode", choices=quantize.MODES, help="affine (default), mxfp4 or mxfp8")
    parser.add_argument("--layers", help="layer table RANGE:BITS,... e.g. 0-1:8,2-9:4,10-11:16 (16: float16)")
    parser.add_argument(
        "--embeddings-bits", type=int, dest="embeddings_bits", help="quantize the embeddings too"
    )
    parser.add_argument("--screen", action="store_true", default=None, help="compare with the float teacher")
    parser.add_argument(
        "--layer-map", action="store_true", default=None, dest="layer_map", help="map per-layer sensitivity"
    )
    parser.add_argument("--corpus", help="sentences for the screen / layer map (.txt(.gz), .jsonl, .parquet)")
    parser.add_argument("--sentences", type=int, help="how many corpus sentences (default 2000)")
    parser.add_argument(
        "--retrieval", metavar="TASK_DIR", help="a BEIR task folder: NDCG@10 of both teachers"
    )
    parser.add_argument(
        "--retrieval-docs", type=int, dest="retrieval_docs", help="corpus subset: relevant docs + N others"
    )
    parser.add_argument("--max-seq-length", type=int, dest="max_seq_length", help="teacher truncation")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--block-size", type=int, dest="block_size", help="layer map: layers per probe")
    parser.add_argument("--target-bits", type=float, dest="target_bits", help="layer map: bits/weight budget")
    parser.add_argument("--seed", type=int, help="seed of the retrieval subset")
    add_common(parser, out_help="quantized checkpoint folder (with --layer-map: the map's folder)")


def teacher_config(teacher: str) -> BertConfig:
    """The teacher's BERT config, read before loading its weights."""
    from potstill.distill import checkpoint
    from potstill.distill.bert import BertConfig

    folder = checkpoint.resolve(teacher)
    if not (folder / "config.json").is_file():
        raise checkpoint.TeacherLoadError(f"{folder} has no config.json; is this a model folder?")
    return BertConfig.from_dict(checkpoint.read_json(folder / "config.json"))


def make_scheme(cfg: QuantizeConfig, num_layers: int) -> quantize.Scheme:
    """The configured scheme on `num_layers` layers; scheme errors become config errors."""
    try:
        return quantize.make_scheme(
            cfg.scheme,
            bits=cfg.bits,
            group_size=cfg.group_size,
            mode=cfg.mode,
            layers=cfg.layers,
            embeddings_bits=cfg.embeddings_bits,
            num_layers=num_layers,
        )
    except quantize.SchemeError as e:
        raise ConfigError(str(e)) from e


def describe(scheme: quantize.Scheme, block: dict[str, Any], bert: BertConfig) -> list[str]:
    """Lines: the layer table, bits per Linear weight, and the embeddings on their own line."""
    bits = quantize.block_bits(bert, block)
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


def save(teacher: Teacher, cfg: QuantizeConfig, scheme: quantize.Scheme, extra_files: dict[str, str]) -> Path:
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


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, QuantizeConfig, "quantize")
    if cfg is None:
        return 0
    if cfg.layer_map:
        return run_layer_map(cfg)
    if not cfg.out and not cfg.screen:
        raise ConfigError("quantize needs --out DIR (or --screen to only compare)")
    print("\n".join(quantize_teacher(cfg)))
    return 0


def quantize_teacher(cfg: QuantizeConfig) -> list[str]:
    """Quantize (and with `screen`, compare) the teacher; write it to `cfg.out` when set.
    Returns the report lines."""
    from potstill.distill.teacher import Teacher

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
    from potstill.distill import screen
    from potstill.distill.teacher import Teacher

    retrieval = screen.retrieval_task(cfg.retrieval, cfg.retrieval_docs, cfg.seed) if cfg.retrieval else None
    texts = screen.read_sentences(cfg.corpus, cfg.sentences)
    float_teacher = Teacher.load(cfg.teacher, max_seq_length=cfg.max_seq_length)
    return screen.screen(float_teacher, quantized, texts, retrieval=retrieval, batch_size=cfg.batch_size)


def run_layer_map(cfg: QuantizeConfig) -> int:
    """Probe each block at 4 bits, draw the map, propose a scheme under `target_bits`, check it."""
    if not cfg.out:
        raise ConfigError("--layer-map needs --out DIR (for layer_map.png, layer_map.json, proposal.toml)")
    from potstill.distill import layer_map, screen
    from potstill.distill.teacher import Teacher

    bert = teacher_config(cfg.teacher)
    default = make_scheme(cfg, bert.num_hidden_layers).default
    probe = quantize.rule_setting(layer_map.PROBE_BITS, default)
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
    scheme = quantize.Scheme("layer-map", default, proposal.rules)
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
    for p in probes:
        f = p.fidelity
        print(
            f"layers {p.label():>5} at {probe.label()}: 1 - mean cos {p.damage:.5f}, top-10 retention {f.top10:.4f}"
        )
    print(*describe(scheme, block, bert), sep="\n")
    print(
        f"proposal under {cfg.target_bits} bits/weight: mean cos {measured.mean_cos:.5f}, top-10 {measured.top10:.4f}"
    )
    print(f"recipe table in {out / PROPOSAL_TOML}; map in {out / MAP_PNG}")
    return 0


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
