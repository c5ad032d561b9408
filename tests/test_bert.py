"""The MLX BERT encoder against a float64 numpy reference, and strict checkpoint-name mapping."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from conftest import edit_weights

from potstill.teacher.bert import BertConfig, BertEncoder, UnsupportedModelError, load_weights, sanitize
from potstill.teacher.encoders import config_from_dict
from potstill.teacher.teacher import Teacher

ATOL = 1e-5


def _padded(ids: list[list[int]], width: int) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.zeros((len(ids), width), dtype=np.int32)
    mask = np.zeros((len(ids), width), dtype=np.int32)
    for row, seq in enumerate(ids):
        tokens[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return tokens, mask


def test_reference_padding_mask_is_sound(tiny_bert, numpy_bert, sentences):
    # The reference itself: a padded batch with a key mask gives each text's unpadded states.
    ref = numpy_bert(tiny_bert)
    ids = ref.tokenize(sentences)
    tokens, mask = _padded(ids, max(map(len, ids)) + 3)
    batched = ref.hidden(tokens, mask)
    for row, seq in enumerate(ids):
        alone = ref.hidden(np.array([seq]), np.ones((1, len(seq))))[0]
        np.testing.assert_allclose(batched[row, : len(seq)], alone, atol=1e-10)


def test_hidden_states_match_reference_in_a_padded_batch(tiny_bert, numpy_bert, sentences):
    teacher = Teacher.load(tiny_bert)
    ref = numpy_bert(tiny_bert)
    ids = ref.tokenize(sentences)
    tokens, mask = _padded(ids, 40)
    hidden = np.array(teacher.model(mx.array(tokens), mx.array(mask)))
    assert hidden.shape == (len(sentences), 40, 64)
    for row, seq in enumerate(ids):
        alone = ref.hidden(np.array([seq]), np.ones((1, len(seq))))[0]
        np.testing.assert_allclose(hidden[row, : len(seq)], alone, atol=ATOL, err_msg=f"text {row}")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("normalize", [True, False])
def test_encode_matches_reference(tmp_path, make_bert, numpy_bert, sentences, pooling, normalize):
    folder = make_bert(tmp_path / "m", pooling=pooling, normalize=normalize)
    teacher = Teacher.load(folder)
    got = teacher.encode(sentences)
    want = numpy_bert(folder).encode(sentences, pooling=pooling, normalize=normalize)
    assert got.dtype == np.float32 and got.shape == (len(sentences), 64)
    np.testing.assert_allclose(got, want, atol=ATOL)
    # The texts differ, so must their embeddings: guards against a reference and model that agree
    # because both ignore the input.
    assert np.abs(want[0] - want[1]).max() > 0.01


@pytest.mark.parametrize("hidden_act", ["gelu_new", "relu"])
def test_other_activations_match_reference(tmp_path, make_bert, numpy_bert, sentences, hidden_act):
    folder = make_bert(tmp_path / "m", hidden_act=hidden_act)
    got = Teacher.load(folder).encode(sentences)
    want = numpy_bert(folder).encode(sentences, pooling="mean", normalize=True)
    np.testing.assert_allclose(got, want, atol=ATOL)


def test_padding_does_not_change_an_embedding(tiny_bert, numpy_bert):
    teacher = Teacher.load(tiny_bert)
    a = "the cat sat on the mat and the dog"
    b = " ".join(["the quick brown fox jumps over the lazy dog"] * 4)
    n_a, n_b = (len(s) for s in teacher.tokenize([a, b]))
    # In the pair, `a` is padded to at least b's length, whatever the padding policy; lengths that are
    # no multiple of 8 get padded alone too under bucket or multiple-of-8 policies.
    assert (n_a, n_b) == (11, 38)
    for pooling in ("mean", "cls", "token-mean"):
        alone = teacher.encode([a], pooling=pooling)[0]
        together = teacher.encode([a, b], pooling=pooling)
        np.testing.assert_allclose(together[0], alone, atol=ATOL, err_msg=pooling)
        np.testing.assert_allclose(together[1], teacher.encode([b], pooling=pooling)[0], atol=ATOL)
    ref = numpy_bert(tiny_bert).encode([a], pooling="mean", normalize=True)[0]
    np.testing.assert_allclose(teacher.encode([a, b])[0], ref, atol=ATOL)


# -------------------------------------------------------------------------------------- sanitize
def _checkpoint(**shape: int) -> dict[str, mx.array]:
    from conftest import random_bert_weights

    w = random_bert_weights(
        vocab_size=shape.get("vocab", 30),
        hidden=16,
        layers=2,
        intermediate=32,
        max_position=20,
        seed=1,
        std=0.2,
    )
    return {k: mx.array(v) for k, v in w.items()}


def _config() -> BertConfig:
    return BertConfig.from_dict(
        {
            "vocab_size": 30,
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 32,
            "max_position_embeddings": 20,
        }
    )


def test_sanitize_maps_every_tensor_and_drops_the_pooler():
    weights = _checkpoint()
    assert "pooler.dense.weight" in weights
    out = sanitize(weights)
    assert not any("pooler" in k for k in out)
    model = BertEncoder(_config())
    load_weights(model, out)  # strict: every parameter present with the right shape, nothing else
    np.testing.assert_array_equal(
        np.array(model.embeddings.word_embeddings.weight),
        np.array(weights["embeddings.word_embeddings.weight"]),
    )


def test_sanitize_handles_bert_prefix_position_ids_heads_and_legacy_layernorm_names():
    plain = sanitize(_checkpoint())
    weights = {"bert." + k: v for k, v in _checkpoint().items()}
    weights["bert.embeddings.position_ids"] = mx.arange(20)[None]
    weights["cls.predictions.bias"] = mx.zeros(30)
    weights["bert.embeddings.LayerNorm.gamma"] = weights.pop("bert.embeddings.LayerNorm.weight")
    weights["bert.embeddings.LayerNorm.beta"] = weights.pop("bert.embeddings.LayerNorm.bias")
    out = sanitize(weights)
    assert sorted(out) == sorted(plain)
    for k in plain:
        assert mx.array_equal(out[k], plain[k]), k


def test_sanitize_refuses_an_unknown_tensor():
    weights = _checkpoint()
    weights["encoder.layer.0.attention.self.rotary.inv_freq"] = mx.zeros(4)
    with pytest.raises(UnsupportedModelError, match=r"encoder\.layer\.0\.attention\.self\.rotary\.inv_freq"):
        sanitize(weights)


def test_load_weights_refuses_missing_extra_and_misshaped_tensors():
    model = BertEncoder(_config())
    missing = sanitize(_checkpoint())
    del missing["layers.1.output.bias"]
    with pytest.raises(UnsupportedModelError, match=r"missing.*layers\.1\.output\.bias"):
        load_weights(model, missing)
    extra = sanitize({**_checkpoint(), "encoder.layer.2.output.dense.bias": mx.zeros(16)})
    with pytest.raises(UnsupportedModelError, match=r"unexpected.*layers\.2\.output\.bias"):
        load_weights(model, extra)
    with pytest.raises(
        UnsupportedModelError, match=r"embeddings\.word_embeddings\.weight has shape \(31, 16\)"
    ):
        load_weights(model, sanitize(_checkpoint(vocab=31)))


def test_teacher_load_with_a_missing_tensor_fails(tmp_path, make_bert):
    folder = make_bert(tmp_path / "m")

    def drop(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        del w["encoder.layer.0.attention.self.key.weight"]
        return w

    edit_weights(folder, drop)
    with pytest.raises(UnsupportedModelError, match=r"(missing|lacks).*layers\.0\.attention\.key\.weight"):
        Teacher.load(folder)


def test_teacher_loads_a_bert_prefixed_checkpoint(tmp_path, make_bert, tiny_bert, sentences):
    folder = make_bert(tmp_path / "m", prefix="bert.")
    np.testing.assert_array_equal(
        Teacher.load(folder).encode(sentences), Teacher.load(tiny_bert).encode(sentences)
    )


# ---------------------------------------------------------------------------------------- config
def test_config_ignores_unknown_keys_and_reads_known_ones(tiny_bert):
    raw = json.loads((tiny_bert / "config.json").read_text())
    cfg = BertConfig.from_dict({**raw, "some_future_key": 1})
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (64, 2, 4)
    assert cfg.vocab_size == raw["vocab_size"] and cfg.intermediate_size == 128


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "deberta-v2"}, r"model_type='deberta-v2' is not supported.*'bert'.*'mpnet'"),
        ({"hidden_act": "silu"}, r"hidden_act='silu' is not supported"),
        ({"position_embedding_type": "relative_key"}, r"position_embedding_type='relative_key'"),
        ({"hidden_size": 66}, r"hidden_size=66 is not divisible by num_attention_heads=4"),
    ],
)
def test_config_refuses_what_the_encoder_cannot_run(change, message):
    base = {"hidden_size": 64, "num_attention_heads": 4}
    with pytest.raises(ValueError, match=message):
        config_from_dict({**base, **change})
