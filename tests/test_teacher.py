"""Teacher: metadata (pooling, normalisation, prompts, max length), batching, save/load, quantization."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from blocks import uniform_block
from conftest import CLS_ID, SEP_ID, pooling_config

from potstill.teacher.teacher import Teacher

ATOL = 1e-5
QUERY = "Represent this sentence for searching relevant passages: "


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(("pooling", "normalize"), [("mean", True), ("cls", False), ("cls", True)])
def test_pooling_and_normalize_come_from_the_metadata(
    tmp_path, make_bert, numpy_bert, sentences, pooling, normalize
):
    folder = make_bert(tmp_path / "m", pooling=pooling, normalize=normalize)
    teacher = Teacher.load(folder)
    assert (teacher.pooling, teacher.normalize, teacher.dim) == (pooling, normalize, 64)
    got = teacher.encode(sentences)
    np.testing.assert_allclose(
        got, numpy_bert(folder).encode(sentences, pooling=pooling, normalize=normalize), atol=ATOL
    )
    norms = np.linalg.norm(got, axis=1)
    if normalize:
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    else:
        assert np.abs(norms - 1.0).min() > 0.1


def test_a_folder_without_sentence_transformers_files_means_mean_pooling_unnormalized(
    tmp_path, make_bert, numpy_bert, sentences, caplog
):
    folder = make_bert(tmp_path / "m", sentence_transformers=False)
    with caplog.at_level(logging.WARNING):
        teacher = Teacher.load(folder)
    assert "no modules.json" in caplog.text
    assert (teacher.pooling, teacher.normalize, teacher.max_seq_length) == ("mean", False, 128)
    np.testing.assert_allclose(
        teacher.encode(sentences),
        numpy_bert(folder).encode(sentences, pooling="mean", normalize=False),
        atol=ATOL,
    )


def test_encode_arguments_override_the_metadata(tiny_bert, numpy_bert, sentences):
    teacher = Teacher.load(tiny_bert)  # mean pooling, normalized
    ref = numpy_bert(tiny_bert)
    np.testing.assert_allclose(
        teacher.encode(sentences, pooling="cls", normalize=False),
        ref.encode(sentences, pooling="cls", normalize=False),
        atol=ATOL,
    )
    with pytest.raises(ValueError, match=r"pooling='max' is not supported; use one of"):
        teacher.encode(sentences, pooling="max")
    with pytest.raises(ValueError, match=r"batch_size=0 must be >= 1"):
        teacher.encode(sentences, batch_size=0)


@pytest.mark.parametrize("normalize", [False, True])
def test_token_mean_pooling_excludes_the_first_and_last_token(tiny_bert, numpy_bert, sentences, normalize):
    teacher = Teacher.load(tiny_bert)
    got = teacher.encode(sentences, pooling="token-mean", normalize=normalize)
    ref = numpy_bert(tiny_bert)
    np.testing.assert_allclose(
        got, ref.encode(sentences, pooling="token-mean", normalize=normalize), atol=ATOL
    )
    # ... and is not the plain mean (which includes [CLS] and [SEP]).
    assert np.abs(got - ref.encode(sentences, pooling="mean", normalize=normalize)).max() > 0.01


def test_named_literal_and_default_prompts(tmp_path, make_bert, numpy_bert):
    folder = make_bert(tmp_path / "m", prompts={"query": QUERY})
    teacher = Teacher.load(folder)
    ref = numpy_bert(folder)
    texts = ["the quick brown fox", "a cat"]
    plain = teacher.encode(texts)
    query = teacher.encode(texts, prompt="query")
    np.testing.assert_allclose(
        query, ref.encode(texts, pooling="mean", normalize=True, prefix=QUERY), atol=ATOL
    )
    np.testing.assert_allclose(query, teacher.encode([QUERY + t for t in texts]), atol=ATOL)
    assert np.abs(query - plain).max() > 0.01
    assert (
        teacher.tokenize(["x"], prompt="query")[0][:3] == teacher.tokenize(["represent this sentence"])[0][:3]
    )
    # A prompt that is not a name in the checkpoint is used literally.
    literal = teacher.encode(texts, prompt="the dog: ")
    np.testing.assert_allclose(
        literal, ref.encode(texts, pooling="mean", normalize=True, prefix="the dog: "), atol=ATOL
    )

    with_default = Teacher.load(
        make_bert(tmp_path / "d", prompts={"query": QUERY}, default_prompt_name="query")
    )
    np.testing.assert_allclose(with_default.encode(texts), query, atol=ATOL)
    # An explicit empty prompt turns the default off.
    np.testing.assert_allclose(with_default.encode(texts, prompt=""), plain, atol=ATOL)


def test_max_seq_length_truncates_the_text_and_keeps_cls_and_sep(tmp_path, make_bert, numpy_bert, sentences):
    folder = make_bert(tmp_path / "m", max_seq_length=10)
    teacher = Teacher.load(folder)
    assert teacher.max_seq_length == 10
    ids = teacher.tokenize(sentences)
    assert max(map(len, ids)) == 10
    long = [s for s in ids if len(s) == 10]
    assert len(long) >= 3 and all(s[0] == CLS_ID and s[-1] == SEP_ID for s in long)
    np.testing.assert_allclose(
        teacher.encode(sentences),
        numpy_bert(folder).encode(sentences, pooling="mean", normalize=True, max_length=10),
        atol=ATOL,
    )
    # The load argument overrides the checkpoint's value; the position table caps both.
    assert Teacher.load(folder, max_seq_length=6).max_seq_length == 6
    assert Teacher.load(folder, max_seq_length=1000).max_seq_length == 128
    short = Teacher.load(folder, max_seq_length=6)
    assert [len(s) for s in short.tokenize(sentences)] == [
        min(6, len(s)) for s in teacher.tokenize(sentences)
    ]


def test_encode_ids_truncates_over_long_sequences_keeping_the_last_token(tmp_path, make_bert):
    teacher = Teacher.load(make_bert(tmp_path / "m", max_seq_length=8))
    seq = [CLS_ID, *range(10, 30), SEP_ID]
    np.testing.assert_array_equal(
        teacher.encode_ids([seq]), teacher.encode_ids([[CLS_ID, *range(10, 16), SEP_ID]])
    )


def test_encode_edge_cases(tiny_bert):
    teacher = Teacher.load(tiny_bert)
    empty = teacher.encode([])
    assert empty.shape == (0, 64) and empty.dtype == np.float32
    with pytest.raises(TypeError, match="list of texts"):
        teacher.encode("a string")
    np.testing.assert_array_equal(teacher.encode(("a cat", "a dog")), teacher.encode(["a cat", "a dog"]))
    with pytest.raises(ValueError, match="sequence 1 has no tokens"):
        teacher.encode_ids([[CLS_ID, SEP_ID], []])


def test_batch_size_does_not_change_results_or_order(tiny_bert, numpy_bert, sentences):
    teacher = Teacher.load(tiny_bert)
    texts = sentences * 3 + [s.upper() for s in sentences]
    one = teacher.encode(texts, batch_size=1)
    np.testing.assert_allclose(teacher.encode(texts, batch_size=64), one, atol=ATOL)
    np.testing.assert_allclose(teacher.encode(texts, batch_size=5), one, atol=ATOL)
    np.testing.assert_allclose(
        one, numpy_bert(tiny_bert).encode(texts, pooling="mean", normalize=True), atol=ATOL
    )


def test_weights_sha256_identifies_the_weight_file(tiny_bert):
    import hashlib

    want = hashlib.sha256((tiny_bert / "model.safetensors").read_bytes()).hexdigest()
    assert Teacher.load(tiny_bert).weights_sha256 == want


# ------------------------------------------------------------------------------------ save/load
def test_save_then_load_gives_identical_outputs_and_metadata(tmp_path, make_bert, sentences):
    folder = make_bert(
        tmp_path / "m", pooling="cls", normalize=False, max_seq_length=12, prompts={"query": QUERY}
    )
    teacher = Teacher.load(folder)
    out = tmp_path / "saved"
    teacher.save(out)
    raw = json.loads((out / "config.json").read_text())
    assert raw["potstill"]["format"] == "potstill-mlx" and "quantization" not in raw
    again = Teacher.load(out)
    assert (again.pooling, again.normalize, again.max_seq_length) == ("cls", False, 12)
    assert again.meta.prompts == {"query": QUERY}
    for prompt in (None, "query"):
        np.testing.assert_array_equal(
            again.encode(sentences, prompt=prompt), teacher.encode(sentences, prompt=prompt)
        )
    # A saved folder can be saved again (native names in, native names out).
    again.save(tmp_path / "saved2")
    np.testing.assert_array_equal(
        Teacher.load(tmp_path / "saved2").encode(sentences), teacher.encode(sentences)
    )


def test_quantized_round_trip_is_exact_and_close_to_float(tiny_bert, tmp_path, sentences):
    block = uniform_block(8, 32)
    floats = Teacher.load(tiny_bert).encode(sentences)
    q = Teacher.load(tiny_bert, quantization=block)
    assert q.quantization == block
    kinds = {type(m).__name__ for _, m in q.model.named_modules() if "Linear" in type(m).__name__}
    assert kinds == {"CpuQuantizedLinear"}
    got = q.encode(sentences)
    assert np.abs(got - floats).max() > 1e-6, "8-bit weights must change the numbers a little"
    assert _cos(got, floats).min() > 0.99
    q.save(tmp_path / "q8")
    raw = json.loads((tmp_path / "q8" / "config.json").read_text())
    assert raw["quantization"] == block
    again = Teacher.load(tmp_path / "q8")
    assert again.quantization == block
    np.testing.assert_array_equal(again.encode(sentences), got)
    with pytest.raises(ValueError, match="already quantized; load it without a quantization setting"):
        Teacher.load(tmp_path / "q8", quantization=block)


def test_per_module_quantization_overrides_survive_a_round_trip(tiny_bert, tmp_path, sentences):
    block = {**uniform_block(4, 32), "layers.0.output": False, "layers.1.intermediate": {"bits": 8}}
    q = Teacher.load(tiny_bert, quantization=block)
    modules = dict(q.model.named_modules())
    assert type(modules["layers.0.output"]).__name__ == "Linear"
    assert (modules["layers.1.intermediate"].bits, modules["layers.1.output"].bits) == (8, 4)
    got = q.encode(sentences)
    q.save(tmp_path / "q")
    again = Teacher.load(tmp_path / "q")
    modules = dict(again.model.named_modules())
    assert type(modules["layers.0.output"]).__name__ == "Linear"
    assert modules["layers.1.intermediate"].bits == 8
    np.testing.assert_array_equal(again.encode(sentences), got)


def test_save_into_its_own_folder(tmp_path, make_bert, sentences):
    folder = make_bert(tmp_path / "m")
    teacher = Teacher.load(folder)
    want = teacher.encode(sentences)
    teacher.save(folder)
    np.testing.assert_array_equal(Teacher.load(folder).encode(sentences), want)


def test_include_prompt_false_leaves_the_prompt_out_of_the_mean(tmp_path, make_bert, numpy_bert):
    folder = make_bert(tmp_path / "m", prompts={"query": QUERY})
    cfg = pooling_config(64, "mean", include_prompt=False)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    ref = numpy_bert(folder)
    texts = ["the quick brown fox", "a cat sat on the mat"]
    # sentence-transformers' prompt length: the prompt's tokens without the trailing [SEP].
    skip = len(ref.tokenize([QUERY])[0]) - 1
    want = []
    for seq in ref.tokenize([QUERY + t for t in texts]):
        h = ref.hidden(np.array([seq]), np.ones((1, len(seq))))[0][skip:].mean(0)
        want.append(h / np.linalg.norm(h))
    got = Teacher.load(folder).encode(texts, prompt="query")
    np.testing.assert_allclose(got, np.stack(want), atol=ATOL)
