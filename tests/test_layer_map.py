"""The layer map: blocks, the proposal under a bits-per-weight target (checked against brute force),
and `potstill quantize --layer-map` end to end on a tiny random BERT."""

from __future__ import annotations

import itertools
import json

import pytest
from blocks import layer_bits, uniform_block

from potstill.quantize import bits as qbits
from potstill.quantize import layer_map, schemes
from potstill.quantize.screen import Fidelity

G64 = schemes.make_setting(4, 64)


def _probes(damages, block=1):
    out = []
    for i, d in enumerate(damages):
        f = Fidelity(sentences=100, mean_cos=1.0 - d, min_cos=1.0 - 2 * d, top1=1.0 - d, top10=1.0 - d)
        out.append(layer_map.Probe(i * block, i * block + block - 1, f))
    return out


def test_blocks_cover_every_layer_once():
    assert layer_map.blocks(5, 2) == [(0, 1), (2, 3), (4, 4)]
    assert layer_map.blocks(3, 1) == [(0, 0), (1, 1), (2, 2)]
    with pytest.raises(ValueError, match=r"block_size=4 should be in 1..3"):
        layer_map.blocks(3, 4)


def test_probe_block_quantizes_one_block_and_keeps_the_rest_float():
    block = layer_map.probe_block(2, 3, 6, G64)
    assert layer_bits(block, 6) == [16, 16, 4, 4, 16, 16]
    assert layer_bits(layer_map.probe_block(0, 0, 2, G64), 2) == [4, 16]


@pytest.mark.parametrize(("bits", "group", "mode"), [(4, 64, "affine"), (8, 32, "affine"), (4, 32, "mxfp4")])
def test_setting_bpw_agrees_with_counted_bits(bits, group, mode):
    from potstill.teacher.bert import BertConfig

    cfg = BertConfig(
        vocab_size=40, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
    )
    setting = schemes.make_setting(bits, group, mode)
    counted = qbits.block_bits(cfg, uniform_block(bits, group, mode)).linear_bpw
    assert layer_map.setting_bpw(setting) == pytest.approx(counted)


def _brute_force(probes, target, options=layer_map.AFFINE_OPTIONS):
    best = None
    for combo in itertools.product(options, repeat=len(probes)):
        bpw = sum(layer_map.setting_bpw(schemes.rule_setting(b, G64)) for b in combo) / len(combo)
        if bpw <= target + 1e-9:
            damage = sum(layer_map.predicted(p.damage, b) for p, b in zip(probes, combo, strict=True))
            if best is None or damage < best[0] - 1e-15:
                best = (damage, bpw)
    return best


@pytest.mark.parametrize("target", [4.5, 5.0, 6.5, 7.2, 9.0, 12.0, 15.9])
def test_proposal_is_the_least_predicted_damage_under_the_target(target):
    probes = _probes([0.002, 0.001, 0.004, 0.03])
    p = layer_map.propose(probes, target, G64)
    damage, _ = _brute_force(probes, target)
    assert p.predicted_damage == pytest.approx(damage)
    assert p.bits_per_weight <= target + 1e-9
    # The table covers every layer once and yields the promised bits per weight.
    scheme = schemes.Scheme("p", G64, p.rules)
    assert len(layer_bits(scheme.block(4), 4)) == 4
    from potstill.teacher.bert import BertConfig

    cfg = BertConfig(
        vocab_size=40, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128
    )
    assert qbits.block_bits(cfg, scheme.block(4)).linear_bpw == pytest.approx(p.bits_per_weight)


def test_the_sensitive_layer_is_protected_first():
    probes = _probes([0.001, 0.001, 0.001, 0.05])
    p = layer_map.propose(probes, (3 * 4.5 + 16) / 4, G64, options=(4, 16))
    assert [(r.start, r.end, r.bits) for r in p.rules] == [(0, 2, 4), (3, 3, 16)]
    # With every option, the same budget buys more: 6 bits for the lazy layers, 8 for the sensitive one.
    full = layer_map.propose(probes, (3 * 4.5 + 16) / 4, G64)
    assert [(r.start, r.end, r.bits) for r in full.rules] == [(0, 2, 6), (3, 3, 8)]
    assert full.predicted_damage < p.predicted_damage
    assert p.toml().splitlines()[2] == 'layers = [{range = "0-2", bits = 4}, {range = "3", bits = 16}]'
    with pytest.raises(
        ValueError, match=r"target_bits=4.0 is below the cheapest scheme \(4.5 bits per weight"
    ):
        layer_map.propose(_probes([0.001] * 4), 4.0, G64)
    with pytest.raises(
        ValueError, match=r"target_bits=16 leaves every layer float16; give a target below 16"
    ):
        layer_map.propose(_probes([0.001] * 4), 16, G64)


def test_blocks_of_two_get_one_setting_each():
    p = layer_map.propose(_probes([0.001, 0.05], block=2), (4.5 + 16) / 2, G64, options=(4, 16))
    assert [(r.start, r.end, r.bits) for r in p.rules] == [(0, 1, 4), (2, 3, 16)]


def test_cli_layer_map_draws_proposes_and_its_table_quantizes(tmp_path, make_bert, run_cli, sentences):
    src = make_bert(tmp_path / "m", layers=4)
    corpus = tmp_path / "corpus.txt"
    extra = [f"the {w} was {v}." for w in ("cat", "dog", "fox") for v in ("quick", "lazy", "brown")]
    corpus.write_text("\n".join([*sentences, *extra]))
    out = tmp_path / "map"
    res = run_cli(
        "quantize", "--teacher", src, "--layer-map", "--corpus", corpus, "--target-bits", "7", "--out", out
    )
    assert res.returncode == 0, res.stderr
    assert (out / "layer_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "layer_map.json").read_text())
    assert [(p["start"], p["end"]) for p in data["probes"]] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert all(
        0 < p["damage"] < 0.2 and p["damage"] == pytest.approx(1 - p["mean_cos"]) for p in data["probes"]
    )
    proposal = data["proposal"]
    assert proposal["bits_per_weight"] <= 7 and proposal["measured"]["sentences"] == 17
    # Re-proposing from the saved probes gives the same table.
    again = layer_map.propose(layer_map.read_probes(data), 7, G64)
    assert again.table() == proposal["layers"]
    # The proposal is a recipe: quantizing with it records exactly its per-layer bits.
    res = run_cli("quantize", "--recipe", out / "proposal.toml", "--teacher", src, "--out", tmp_path / "q")
    assert res.returncode == 0, res.stderr
    raw = json.loads((tmp_path / "q" / "config.json").read_text())
    want = [r["bits"] for r in proposal["layers"] for _ in range(*_span(r["range"]))]
    assert layer_bits(raw["quantization"], 4) == want
    assert raw["quantization"] == proposal["quantization"]
    assert f"linear weights: {proposal['bits_per_weight']:.3f} bits/weight" in res.stdout


def _span(rng: str) -> tuple[int, int]:
    a, _, b = rng.partition("-")
    return int(a), int(b or a) + 1


def test_cli_layer_map_refuses_an_impossible_target_before_probing(tmp_path, tiny_bert, run_cli):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(
            f"the {w} was {v}." for w in ("cat", "dog", "fox", "mat") for v in ("quick", "lazy", "brown")
        )
    )
    out = tmp_path / "map"
    res = run_cli(
        "quantize",
        "--teacher",
        tiny_bert,
        "--layer-map",
        "--corpus",
        corpus,
        "--target-bits",
        "3",
        "--out",
        out,
    )
    assert (
        res.returncode == 2
        and "target_bits=3.0 is below the cheapest scheme (4.5 bits per weight" in res.stderr
    )
    assert not out.exists()
