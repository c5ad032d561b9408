"""Quantization blocks, per-module overrides, and the CPU (dequantize + BLAS) execution path."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from blocks import layer_bits, uniform_block

from potstill.quantize import bits as qbits
from potstill.quantize import schemes
from potstill.teacher import quantized as qz
from potstill.teacher.bert import BertConfig, BertEncoder

CFG = BertConfig(
    vocab_size=40,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=32,
)


def _kinds(model: nn.Module) -> dict[str, str]:
    return {name: type(m).__name__ for name, m in model.named_modules() if "Linear" in type(m).__name__}


def _linear_names() -> list[str]:
    # Taken from the float model, so the tests follow the encoder's module layout (e.g. fused qkv).
    names = sorted(n for n, m in BertEncoder(CFG).named_modules() if isinstance(m, nn.Linear))
    assert len(names) >= 3 * CFG.num_hidden_layers  # attention out, FFN in, FFN out at least
    return names


def test_apply_quantizes_every_linear_and_nothing_else():
    model = BertEncoder(CFG)
    qz.apply(model, uniform_block(4, 32))
    kinds = _kinds(model)
    assert sorted(kinds) == _linear_names() and set(kinds.values()) == {"QuantizedLinear"}
    quantized = [m for m in model.modules() if isinstance(m, nn.QuantizedLinear)]
    assert all(m.bits == 4 and m.group_size == 32 for m in quantized)
    assert type(model.embeddings.word_embeddings) is nn.Embedding
    assert type(model.embeddings.norm) is nn.LayerNorm


def test_per_module_entries_keep_float_or_change_bits():
    names = _linear_names()
    keep, eight = names[0], names[-1]
    model = BertEncoder(CFG)
    qz.apply(model, {**uniform_block(4, 64), keep: False, eight: {"bits": 8}})
    kinds = _kinds(model)
    assert kinds.pop(keep) == "Linear"
    assert set(kinds.values()) == {"QuantizedLinear"}
    modules = dict(model.named_modules())
    assert modules[eight].bits == 8
    assert {modules[n].bits for n in names[1:-1]} == {4}


def test_use_cpu_kernels_swaps_every_quantized_linear():
    names = _linear_names()
    model = BertEncoder(CFG)
    qz.apply(model, {**uniform_block(8, 64), names[1]: False})
    assert qz.use_cpu_kernels(model) == len(names) - 1
    kinds = _kinds(model)
    assert kinds.pop(names[1]) == "Linear"
    assert set(kinds.values()) == {"CpuQuantizedLinear"}
    assert qz.use_cpu_kernels(model) == 0  # already swapped


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("bias", [True, False])
def test_cpu_quantized_linear_matches_mlx_quantized_matmul(bits, bias):
    mx.random.seed(3)
    linear = nn.Linear(128, 96, bias=bias)
    x = mx.random.normal((5, 7, 128))
    q = nn.QuantizedLinear.from_linear(linear, group_size=32, bits=bits)
    want = np.array(q(x))  # MLX's own quantized kernel
    q.__class__ = qz.CpuQuantizedLinear
    got = np.array(q(x))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The quantization decides the numbers: 4 bits moves them more than 8 bits.
    error = np.abs(got - np.array(linear(x))).max()
    assert (0.0 < error < 0.05) if bits == 8 else (0.02 < error < 0.5)


# ------------------------------------------------------------------------------------ schemes
def _triples(rules):
    return [(r.start, r.end, r.bits) for r in rules]


def test_ends_are_a_quarter_rounded_half_up_at_least_one():
    assert [schemes.ends(n) for n in (1, 2, 4, 5, 6, 12, 24)] == [1, 1, 1, 1, 2, 3, 6]


def test_named_schemes_expand_relative_to_the_layer_count():
    # mxbai's depth: ends are layers 0-5 and 18-23.
    assert _triples(schemes.named_rules("crush_middle", 24, 4)) == [(0, 5, 16), (6, 17, 4), (18, 23, 16)]
    assert _triples(schemes.named_rules("protect_late", 24, 4)) == [(0, 17, 4), (18, 23, 16)]
    assert _triples(schemes.named_rules("3tier", 24, 4)) == [(0, 5, 8), (6, 17, 4), (18, 23, 8)]
    assert _triples(schemes.named_rules("uniform", 24, 5)) == [(0, 23, 5)]
    # MiniLM's depth; `bits` sets the crushed layers.
    assert _triples(schemes.named_rules("3tier", 6, 3)) == [(0, 1, 8), (2, 3, 3), (4, 5, 8)]
    with pytest.raises(qz.SchemeError, match="scheme='int4' is not known; use one of"):
        schemes.named_rules("int4", 6, 4)


def test_block_records_global_and_per_layer_settings():
    crush = schemes.make_scheme("crush_middle", num_layers=6).block(6)
    assert {k: crush[k] for k in ("bits", "group_size", "mode")} == {
        "bits": 4,
        "group_size": 64,
        "mode": "affine",
    }
    assert layer_bits(crush, 6) == [16, 16, 4, 4, 16, 16]
    assert crush["layers.0.attention.qkv"] is False and "layers.2.output" not in crush
    three = schemes.make_scheme("3tier", group_size=32, num_layers=6).block(6)
    assert (three["bits"], three["group_size"]) == (8, 32)  # the most common setting is the global one
    assert three["layers.3.intermediate"] == {"bits": 4, "group_size": 32, "mode": "affine"}
    assert layer_bits(three, 6) == [8, 8, 4, 4, 8, 8]
    table = schemes.make_scheme(layers=["0:16", {"range": "1-2", "bits": 6}], bits=5, num_layers=4)
    assert layer_bits(table.block(4), 4) == [16, 6, 6, 5]
    assert table.table(4) == [
        {"range": "0", "bits": 16},
        {"range": "1-2", "bits": 6},
        {"range": "3", "bits": 5},
    ]
    emb = schemes.make_scheme(embeddings_bits=8, num_layers=2).block(2)
    assert emb["embeddings.word_embeddings"] == {"bits": 8, "group_size": 64, "mode": "affine"}
    assert "embeddings.token_type_embeddings" not in emb


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": ["0-3:4", "3-5:8"]}, r"layer ranges 0-3 and 3-5 overlap; give each layer one entry"),
        (
            {"layers": ["0-5:7"]},
            r"bits=7 is not supported; use one of \(2, 3, 4, 5, 6, 8\) \(or 16: float16\)",
        ),
        (
            {"layers": ["4-6:8"]},
            r"layer range 4-6 is out of range: the teacher has 6 layers \(0-5\); use layers up to 5",
        ),
        ({"layers": ["5-2:8"]}, r"ends before it starts; write 2-5"),
        ({"layers": ["a-b:8"]}, r"layer range 'a-b' should be N or N-M"),
        ({"layers": ["0-5"]}, r"should be RANGE:BITS"),
        ({"layers": [{"range": "0", "bits": 8, "mode": "x"}]}, r"should be \{range"),
        ({"layers": ["0-5:16"]}, r"quantizes none of the 6 layers"),
        ({"name": "3tier", "layers": ["0:8"]}, r"give scheme='3tier' or a layers table, not both"),
        ({"bits": 7}, r"bits=7 is not supported"),
        ({"group_size": 16}, r"group_size=16 is not supported; use one of \(32, 64, 128\)"),
        ({"mode": "nf4"}, r"mode='nf4' is not supported; use one of \('affine', 'mxfp4', 'mxfp8'\)"),
        ({"mode": "mxfp4", "group_size": 64}, r"mode=mxfp4 stores 4 bits in groups of 32"),
        ({"mode": "mxfp4", "layers": ["0-1:6"]}, r"bits=6 cannot be stored in mode=mxfp4"),
    ],
)
def test_bad_schemes_get_errors_that_name_the_fix(kwargs, message):
    name = kwargs.pop("name", "uniform")
    with pytest.raises(qz.SchemeError, match=message):
        schemes.make_scheme(name, num_layers=6, **kwargs)


def test_apply_refuses_entries_that_name_no_module():
    with pytest.raises(qz.SchemeError, match=r"name no module of this model: \['layers.9.output'\]"):
        qz.apply(BertEncoder(CFG), {**uniform_block(4), "layers.9.output": {"bits": 8}})


def test_entry_keys_it_leaves_out_come_from_the_global_setting():
    model = BertEncoder(CFG)
    qz.apply(model, {**uniform_block(4, 32), "layers.0.output": {"bits": 8}})
    assert (model.layers[0].output.bits, model.layers[0].output.group_size) == (8, 32)


# ------------------------------------------------------------------------------- bits counting
@pytest.mark.parametrize(
    ("bits", "group_size", "mode", "bpw"),
    [
        (4, 64, "affine", 4.5),
        (8, 32, "affine", 9.0),
        (3, 32, "affine", 4.0),
        (4, 32, "mxfp4", 4.25),
        (8, 32, "mxfp8", 8.25),
    ],
)
def test_bits_per_weight_counts_scales_and_biases(bits, group_size, mode, bpw):
    block = uniform_block(bits, group_size, mode)
    lazy = qbits.block_bits(CFG, block)
    model = BertEncoder(CFG)
    qz.quantize_model(model, block)
    real = qbits.count_bits(model)
    assert lazy == real
    assert real.linear_bpw == pytest.approx(bpw)
    linears = [m for m in BertEncoder(CFG).modules() if isinstance(m, nn.Linear)]
    assert real.linear_weights == sum(m.weight.size for m in linears)
    assert real.embedding_bpw == 16.0  # float16 unless asked
    assert real.embedding_weights == (CFG.vocab_size + CFG.max_position_embeddings + CFG.type_vocab_size) * 64


def test_layer_wise_bits_are_the_weighted_mean_and_embeddings_their_own_line():
    block = schemes.make_scheme(layers=["0:16"], bits=4, embeddings_bits=8, num_layers=2).block(2)
    report = qbits.block_bits(CFG, block)
    assert report.linear_bpw == pytest.approx((16 + 4.5) / 2)  # both layers hold the same Linears
    word_pos = (CFG.vocab_size + CFG.max_position_embeddings) * 64
    token_type = CFG.type_vocab_size * 64  # stays float16: the encoder reads its row directly
    assert report.embedding_bits == pytest.approx(word_pos * 8.5 + token_type * 16)


def test_a_group_size_that_does_not_divide_the_width_is_a_clear_error():
    with pytest.raises(
        qz.SchemeError, match=r"group_size=128 .*divisible by the quantization group size 128"
    ):
        qz.apply(BertEncoder(CFG), uniform_block(4, 128))


# ------------------------------------------------------------------- teachers: save and load
MXBAI_QUERY = "Represent this sentence for searching relevant passages: "


def _settings(teacher):
    """{module path: bits or 16} of every Linear/Embedding, as loaded."""
    out = {}
    for name, m in teacher.model.named_modules():
        if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
            out[name] = (m.bits, m.group_size, m.mode)
        elif isinstance(m, (nn.Linear, nn.Embedding)):
            out[name] = 16
    return out


def test_layer_wise_round_trip_is_exact_and_stores_float16(tiny_bert, tmp_path, sentences):
    from safetensors import safe_open

    from potstill.teacher.teacher import Teacher

    scheme = schemes.make_scheme(layers=["0:16", "1:8"], group_size=32, embeddings_bits=8, num_layers=2)
    block = scheme.block(2)
    q = Teacher.load(tiny_bert, quantization=block)
    got = q.encode(sentences)
    q.save(tmp_path / "q")
    again = Teacher.load(tmp_path / "q")
    assert again.quantization == block
    assert _settings(again) == _settings(q)
    assert _settings(again)["layers.0.output"] == 16
    assert _settings(again)["layers.1.output"] == (8, 32, "affine")
    assert _settings(again)["embeddings.word_embeddings"] == (8, 32, "affine")
    np.testing.assert_array_equal(again.encode(sentences), got)
    with safe_open(str(tmp_path / "q" / "model.safetensors"), "np") as fh:
        dtypes = {k: str(fh.get_tensor(k).dtype) for k in fh.keys()}  # noqa: SIM118
    assert dtypes["layers.0.output.weight"] == "float16"  # a float layer: float16 on disk
    assert dtypes["layers.1.output.weight"] == "uint32" and dtypes["layers.1.output.scales"] == "float16"
    assert dtypes["embeddings.norm.weight"] == "float16"
    # The float layer really is float and the 8-bit one close: all near the float teacher.
    floats = Teacher.load(tiny_bert).encode(sentences)
    assert np.abs(got - floats).max() > 0 and (got * floats).sum(1).min() > 0.99


@pytest.mark.parametrize("mode", ["mxfp4", "mxfp8"])
def test_mx_modes_round_trip(tiny_bert, tmp_path, sentences, mode):
    from potstill.teacher.teacher import Teacher

    block = schemes.make_scheme(mode=mode, num_layers=2).block(2)
    q = Teacher.load(tiny_bert, quantization=block)
    assert {s[2] for s in _settings(q).values() if s != 16} == {mode}
    got = q.encode(sentences)
    q.save(tmp_path / mode)
    np.testing.assert_array_equal(Teacher.load(tmp_path / mode).encode(sentences), got)
    floats = Teacher.load(tiny_bert).encode(sentences)
    assert (got * floats).sum(1).min() > (0.95 if mode == "mxfp4" else 0.995)


def test_mxbai_shaped_teacher_3tier_round_trip(tmp_path, make_bert, sentences):
    """24 layers, CLS pooling, a query prompt (mxbai's shape), tiny widths."""
    from potstill.teacher.teacher import Teacher

    folder = make_bert(
        tmp_path / "mxbai", layers=24, pooling="cls", prompts={"query": MXBAI_QUERY}, max_seq_length=64
    )
    block = schemes.make_scheme("3tier", num_layers=24).block(24)
    assert layer_bits(block, 24) == [8] * 6 + [4] * 12 + [8] * 6
    q = Teacher.load(folder, quantization=block)
    want = {p: q.encode(sentences, prompt=p) for p in (None, "query")}
    q.save(tmp_path / "q")
    again = Teacher.load(tmp_path / "q")
    assert (again.pooling, again.meta.prompts) == ("cls", {"query": MXBAI_QUERY})
    assert layer_bits(again.quantization, 24) == layer_bits(block, 24)
    bits = {name: s[0] for name, s in _settings(again).items() if name.startswith("layers.")}
    assert {bits[f"layers.{i}.attention.qkv"] for i in range(6, 18)} == {4}
    assert {bits[f"layers.{i}.output"] for i in (*range(6), *range(18, 24))} == {8}
    for p, emb in want.items():
        np.testing.assert_array_equal(again.encode(sentences, prompt=p), emb)


# ----------------------------------------------------------------------------------- command
def test_cli_quantize_writes_a_checkpoint_that_loads_exactly(tmp_path, make_bert, run_cli, sentences):
    import json

    from potstill.teacher.teacher import Teacher

    src = make_bert(tmp_path / "m", layers=6)
    out = tmp_path / "q"
    res = run_cli("quantize", "--teacher", src, "--scheme", "3tier", "--group-size", "32", "--out", out)
    assert res.returncode == 0, res.stderr
    block = schemes.make_scheme("3tier", group_size=32, num_layers=6).block(6)
    raw = json.loads((out / "config.json").read_text())
    assert raw["quantization"] == block
    want_bpw = (
        4 * (8 + 32 / 32) + 2 * (4 + 32 / 32)
    ) / 6  # 8-bit ends, 4-bit middle, float16 scale+bias per group
    assert f"linear weights: {want_bpw:.3f} bits/weight" in res.stdout
    assert "embeddings: 16.000 bits/weight" in res.stdout
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    assert f"size on disk: {size:.1f} MB" in res.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "quantize" and manifest["scheme"]["layers"][1] == {"range": "2-3", "bits": 4}
    expected = Teacher.load(src, quantization=block).encode(sentences)
    np.testing.assert_array_equal(Teacher.load(out).encode(sentences), expected)


def test_cli_recipe_table_and_bad_tables(tmp_path, make_bert, run_cli):
    import json

    src = make_bert(tmp_path / "m", layers=4)
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[quantize]\nteacher = "{src}"\nlayers = [{{range = "0", bits = 16}}, {{range = "1-3", bits = 6}}]\n'
    )
    res = run_cli("quantize", "--recipe", recipe, "--out", tmp_path / "q")
    assert res.returncode == 0, res.stderr
    raw = json.loads((tmp_path / "q" / "config.json").read_text())
    assert layer_bits(raw["quantization"], 4) == [16, 6, 6, 6]
    assert raw["quantization"]["layers.0.intermediate"] is False
    for layers, message in [
        ("0-2:4,2-3:8", "layer ranges 0-2 and 2-3 overlap"),
        ("0-3:7", "bits=7 is not supported"),
        ("3-4:8", "layer range 3-4 is out of range: the teacher has 4 layers (0-3)"),
    ]:
        res = run_cli("quantize", "--teacher", src, "--layers", layers, "--out", tmp_path / "bad")
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert not (tmp_path / "bad").exists()
