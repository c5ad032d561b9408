"""The MLX MPNet encoder: tiny random MPNet checkpoints against sentence-transformers (always run),
its relative position buckets against transformers', and the real all-mpnet-base-v2 on 2,000 wiki
sentences (skipped, with the reason, where its weights cannot be had)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, _write_json, tiny_vocab, write_modules
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from potstill.distill.tokens import token_ids
from potstill.teacher.bert import UnsupportedModelError
from potstill.teacher.mpnet import relative_buckets
from potstill.teacher.teacher import Teacher

MPNET_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
HAVE_ST = importlib.util.find_spec("sentence_transformers") is not None


def make_mpnet(
    folder: Path, *, pooling: str = "mean", normalize: bool = True, layers: int = 2, seed: int = 0
) -> Path:
    """A tiny random MPNet sentence encoder (MPNetModel names, an MPNet tokenizer: <s> text </s>)."""
    hidden, heads, inter, max_len = 32, 4, 64, 300
    vocab = {t: i for i, t in enumerate([*MPNET_SPECIALS, *tiny_vocab(), "<mask>"])}
    rng = np.random.default_rng(seed)

    def normal(*shape: int, std: float = 0.2) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def norm(p: str) -> dict[str, np.ndarray]:
        return {f"{p}.weight": 1.0 + normal(hidden), f"{p}.bias": normal(hidden)}

    w = {
        "embeddings.word_embeddings.weight": normal(len(vocab), hidden),
        "embeddings.position_embeddings.weight": normal(max_len + 2, hidden),
        **norm("embeddings.LayerNorm"),
        "encoder.relative_attention_bias.weight": normal(32, heads, std=1.0),  # large: it must matter
        "pooler.dense.weight": normal(hidden, hidden),
        "pooler.dense.bias": normal(hidden),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for n in "qkvo":
            w[f"{p}.attention.attn.{n}.weight"] = normal(hidden, hidden)
            w[f"{p}.attention.attn.{n}.bias"] = normal(hidden)
        w |= norm(f"{p}.attention.LayerNorm") | norm(f"{p}.output.LayerNorm")
        w[f"{p}.intermediate.dense.weight"] = normal(inter, hidden)
        w[f"{p}.intermediate.dense.bias"] = normal(inter)
        w[f"{p}.output.dense.weight"] = normal(hidden, inter)
        w[f"{p}.output.dense.bias"] = normal(hidden)
    folder.mkdir(parents=True)
    config = {
        "architectures": ["MPNetModel"], "model_type": "mpnet", "vocab_size": len(vocab),
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": inter, "max_position_embeddings": max_len + 2, "layer_norm_eps": 1e-5,
        "hidden_act": "gelu", "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        "relative_attention_num_buckets": 32,
    }  # fmt: skip
    _write_json(folder / "config.json", config)
    save_file(w, str(folder / "model.safetensors"))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens([*MPNET_SPECIALS, "[UNK]", "<mask>"])
    tok.save(str(folder / "tokenizer.json"))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>"}
    specials |= {"unk_token": "[UNK]", "pad_token": "<pad>", "mask_token": "<mask>"}
    _write_json(folder / "special_tokens_map.json", specials)
    tok_cfg = {
        **specials,
        "do_lower_case": True,
        "model_max_length": max_len,
        "tokenizer_class": "MPNetTokenizer",
    }
    _write_json(folder / "tokenizer_config.json", tok_cfg)
    write_modules(folder, hidden, pooling, normalize)
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_len, "do_lower_case": False})
    return folder


# Short and long texts: offsets below 8 (exact buckets), up to 128 (log buckets) and beyond (clamped).
TEXTS = [
    "hello world",
    "the cat sat on the mat.",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 6),
    " ".join(["a cat and a dog play, walk and talk"] * 20),
    "zyx qwv!",
]


@pytest.mark.skipif(not HAVE_ST, reason="needs sentence-transformers (the eval extra)")
@pytest.mark.parametrize(("pooling", "normalize"), [("mean", True), ("cls", False)])
def test_tiny_mpnet_matches_sentence_transformers(tmp_path: Path, pooling: str, normalize: bool) -> None:
    """cls + no normalize is multi-qa-mpnet-base-dot-v1's shape; mean + normalize all-mpnet-base-v2's."""
    from sentence_transformers import SentenceTransformer

    folder = make_mpnet(tmp_path / "m", pooling=pooling, normalize=normalize)
    teacher = Teacher.load(folder)
    assert (teacher.pooling, teacher.normalize) == (pooling, normalize)
    st = SentenceTransformer(str(folder), device="cpu")
    theirs = st.encode(TEXTS, convert_to_numpy=True)
    assert max(len(i) for i in teacher.tokenize(TEXTS)) > 150  # the clamped buckets are exercised
    np.testing.assert_allclose(teacher.encode(TEXTS, batch_size=2), theirs, atol=2e-5)


@pytest.mark.skipif(not HAVE_ST, reason="needs torch and transformers (the eval extra)")
def test_relative_buckets_equal_transformers() -> None:
    import torch
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    offsets = np.arange(-700, 701)
    theirs = MPNetEncoder.relative_position_bucket(torch.tensor(offsets)).numpy()
    np.testing.assert_array_equal(relative_buckets(offsets), theirs)


def test_mpnet_saves_quantizes_and_wraps_tokens_in_its_own_specials(tmp_path: Path) -> None:
    folder = make_mpnet(tmp_path / "m")
    teacher = Teacher.load(folder)
    ids = token_ids(teacher, ["cat", "dogs"])
    vocab = teacher.tokenizer.get_vocab()
    assert ids[0] == [vocab["<s>"], vocab["cat"], vocab["</s>"]]  # not [CLS]/[SEP]
    assert ids[1][0] == vocab["<s>"] and ids[1][-1] == vocab["</s>"]
    float_emb = teacher.encode(TEXTS)
    q = Teacher.load(folder, quantization={"bits": 8, "group_size": 32})
    q.save(tmp_path / "q")
    again = Teacher.load(tmp_path / "q")
    np.testing.assert_array_equal(again.encode(TEXTS), q.encode(TEXTS))
    assert (again.encode(TEXTS) * float_emb).sum(1).min() > 0.99


def test_a_bert_checkpoint_labelled_mpnet_is_refused(tmp_path: Path, make_bert) -> None:  # type: ignore[no-untyped-def]
    folder = make_bert(tmp_path / "b", model_type="mpnet")
    with pytest.raises(UnsupportedModelError, match="is this an MPNetModel checkpoint"):
        Teacher.load(folder)


# ------------------------------------------------------------------------------ real weights
MPNET_SHA = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def _mpnet_folder() -> Path | str:
    """$POTSTILL_MPNET_TEACHER, else ../shared/tools/get-mpnet-teacher's folder; a str is why not."""
    if env := os.environ.get("POTSTILL_MPNET_TEACHER"):
        return Path(env)
    tool = REPO_ROOT / ".." / "shared" / "tools" / "get-mpnet-teacher"
    if not tool.is_file():
        return f"{tool} not found and POTSTILL_MPNET_TEACHER not set"
    res = subprocess.run([str(tool)], capture_output=True, text=True, timeout=900, check=False)
    if res.returncode != 0:
        return f"get-mpnet-teacher failed: {res.stderr.strip().splitlines()[-1:]}"
    return Path(res.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAVE_ST, reason="needs sentence-transformers (the eval extra)")
def test_all_mpnet_base_v2_matches_sentence_transformers_on_2000_wiki_sentences() -> None:
    folder = _mpnet_folder()
    if isinstance(folder, str):
        print(f"skipping the real-weights MPNet parity: {folder}")
        pytest.skip(folder)
    data = REPO_ROOT / ".." / "shared" / "data" / "corpus" / "wiki" / "sentences.txt.gz"
    if not data.is_file():
        pytest.skip(f"{data} not found")
    with gzip.open(data, "rt", encoding="utf-8") as fh:
        lines = [line.strip() for line in islice(fh, 20_000) if line.strip()]
    # mixed lengths: every 10th line, plus the 100 longest of the first 20,000 (to 384 tokens)
    texts = lines[::10][:1900] + sorted(lines, key=len)[-100:]
    import torch
    from sentence_transformers import SentenceTransformer

    ours = Teacher.load(folder).encode(texts, batch_size=32)
    torch.set_num_threads(os.cpu_count() or 1)
    theirs = SentenceTransformer(str(folder), device="cpu").encode(texts, batch_size=32)
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    print(f"all-mpnet-base-v2 vs sentence-transformers, {len(texts)} sentences: min cosine {cos.min():.7f}")
    assert len(texts) == 2000 and cos.min() >= 0.99999
    assert json.loads((Path(folder) / "config.json").read_text())["model_type"] == "mpnet"
