"""`potstill run RECIPE`: real runs of the shipped recipes on a tiny random BERT and a tiny corpus."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import _WORDS, REPO_ROOT, make_bert, sigkill_when_exists
from model2vec import StaticModel
from safetensors.numpy import load_file

from potstill import manifest, pipeline
from potstill.config import ConfigError
from potstill.export.tables import int8_scale, quantize_int8
from potstill.features.stage import store_name

if importlib.util.find_spec("mteb") is None:
    pytest.skip("potstill run's eval stage needs the eval extra (mteb)", allow_module_level=True)

RECIPES = REPO_ROOT / "recipes"
MXBAI_QUERY = "Represent this sentence for searching relevant passages: "
RunCli = Callable[..., subprocess.CompletedProcess[str]]


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(_WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_sts_task(root: Path, n: int = 30, seed: int = 1) -> Path:
    """A tiny STSBenchmark-named task folder from the tiny vocabulary."""
    rng = np.random.default_rng(seed)
    folder = root / "STSBenchmark"
    folder.mkdir(parents=True)
    rows = [
        {
            "sentence1": " ".join(rng.choice(_WORDS, size=5)),
            "sentence2": " ".join(rng.choice(_WORDS, size=5)),
            "score": float(rng.integers(0, 6)),
        }
        for _ in range(n)
    ]
    spec = {
        "name": "STSBenchmark",
        "type": "STS",
        "main_score": "cosine_spearman",
        "mteb_task": "STSBenchmark",
        "splits": {"test": n},
    }
    (folder / "task.json").write_text(json.dumps(spec))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("run")
    return {
        "root": root,
        "bert": make_bert(root / "bert"),
        "corpus": write_corpus(root / "corpus.txt", 400),
        "tasks": write_sts_task(root / "tasks"),
    }


def run_args(data: dict[str, Path], workdir: Path, *extra: str, recipe: str = "tiny.toml") -> list[str]:
    return [
        "run", str(RECIPES / recipe), "--teacher", str(data["bert"]), "--corpus", str(data["corpus"]),
        "--set", f"run.workdir={workdir}", "--set", f"eval.tasks={data['tasks']}", *extra,
    ]  # fmt: skip


def stage_lines(stdout: str) -> dict[str, str]:
    """stage -> its `==> [i/n] stage: folder (why)` line."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("==> ["):
            out[line.split("] ", 1)[1].split(":", 1)[0]] = line
    return out


@pytest.fixture(scope="module")
def tiny_run(data: dict[str, Path]) -> dict[str, Any]:
    from conftest import run_cli

    work = data["root"] / "work"
    began = time.perf_counter()
    proc = run_cli(*run_args(data, work))
    wall = time.perf_counter() - began
    assert proc.returncode == 0, proc.stderr
    return {"work": work, "proc": proc, "wall": wall}


def test_tiny_recipe_runs_every_stage_and_loads_everywhere(tiny_run: dict[str, Any]) -> None:
    work, proc = tiny_run["work"], tiny_run["proc"]
    lines = stage_lines(proc.stdout)
    assert list(lines) == ["featurize", "distill", "train", "export", "eval"]  # no [quantize]: none
    assert all("no output yet" in line for line in lines.values())
    folder = work / "tiny"
    summary = json.loads((folder / pipeline.SUMMARY).read_text())
    assert [s["status"] for s in summary["stages"].values()] == ["ran"] * 5
    seconds = [s["seconds"] for s in summary["stages"].values()]
    assert all(s > 0 for s in seconds) and sum(seconds) < tiny_run["wall"]  # timed inside this process
    assert summary["seconds_all_stages"] == pytest.approx(sum(seconds), abs=0.05)
    assert f"{summary['stages']['train']['seconds']:8.1f} s" in proc.stdout  # the summary table shows them
    features = Path(summary["stages"]["featurize"]["out"])
    assert features.parent == work / "features" and features.name.startswith("bert-corpus-400-")

    model = folder / "tiny-int8"
    assert summary["model"]["path"] == str(model) and summary["model"]["dtype"] == "int8"
    tensors = load_file(str(model / "model.safetensors"))
    assert tensors["embeddings"].dtype == np.int8 and "weights" not in tensors
    assert json.loads((model / "config.json").read_text())["normalize"] is True
    final = load_file(str(folder / "trained" / "final" / "model.safetensors"))["embeddings"]
    # the int8 rows are the trained table at its least-squares scale, whatever the seed made of it
    np.testing.assert_array_equal(tensors["embeddings"], quantize_int8(final, int8_scale(final)))
    texts = ["the cat sat on the mat", "a quick brown fox", "hello world"]
    assert StaticModel.from_pretrained(model).encode(texts).shape == (3, final.shape[1])

    assert summary["scores"]["tiny-int8"]["dev_score"] is None  # only STSBenchmark: no dev score
    results = json.loads((folder / "eval" / "results.json").read_text())
    sts = results["models"]["tiny-int8"]["tasks"]["STSBenchmark"]["main_score"]
    card = (model / "README.md").read_text()
    assert 0.0 <= sts <= 1.0
    assert "## Evaluation" in card and "| tiny-int8 |" in card and "```toml" in card and "[train]" in card
    assert manifest.verify(model) == []  # the card is rewritten after eval without breaking the manifest
    assert "tiny-int8: dev score -, SciFact -" in proc.stdout


def test_rerun_skips_finished_stages_and_a_changed_setting_reruns_from_its_stage(
    data: dict[str, Path], tiny_run: dict[str, Any], run_cli: RunCli
) -> None:
    work = tiny_run["work"]
    again = run_cli(*run_args(data, work))
    assert again.returncode == 0, again.stderr
    assert all("(done, skipped)" in line for line in stage_lines(again.stdout).values())
    first = json.loads((work / "tiny" / pipeline.SUMMARY).read_text())  # the skipped run rewrote it
    assert {s["status"] for s in first["stages"].values()} == {"skipped"}
    secs = {k: v["seconds"] for k, v in first["stages"].items()}
    assert all(v > 0 for v in secs.values())  # the times of the run that made the folders, kept
    assert first["seconds_this_run"] < sum(secs.values())  # and not this run's (it only checked manifests)

    dry = run_cli(*run_args(data, work, "--set", "train.lr=0.02", "--dry-run"))
    assert dry.returncode == 0, dry.stderr
    assert "train -> " in dry.stdout and "would run: settings changed" in dry.stdout
    changed = run_cli(*run_args(data, work, "--set", "train.lr=0.02"))
    assert changed.returncode == 0, changed.stderr
    lines = stage_lines(changed.stdout)
    assert "skipped" in lines["featurize"] and "skipped" in lines["distill"]
    assert "settings changed" in lines["train"]
    assert "changed" in lines["export"] and "changed" in lines["eval"]  # their input changed

    forced = run_cli(*run_args(data, work, "--set", "train.lr=0.02", "--from", "export", "--until", "export"))
    assert forced.returncode == 0, forced.stderr
    lines = stage_lines(forced.stdout)
    assert "--from" in lines["export"] and "eval" not in lines


def test_sigkill_during_training_then_rerun_equals_uninterrupted(
    data: dict[str, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    extra = ("--set", "train.epochs=12", "--until", "export")
    ref = run_cli(*run_args(data, tmp_path / "ref", *extra))
    assert ref.returncode == 0, ref.stderr
    work = tmp_path / "killed"
    state = work / "tiny" / "trained" / "round1" / "checkpoint" / "state.json"
    sigkill_when_exists(run_args(data, work, *extra), state)
    assert not (work / "tiny" / "trained" / "manifest.json").exists()
    res = run_cli(*run_args(data, work, *extra))
    assert res.returncode == 0, res.stderr
    lines = stage_lines(res.stdout)
    assert "skipped" in lines["featurize"] and "skipped" in lines["distill"]
    assert "resuming after epoch" in res.stderr
    for name in ("trained/final/model.safetensors", "tiny-int8/model.safetensors"):
        got = load_file(str(work / "tiny" / name))["embeddings"]
        want = load_file(str(tmp_path / "ref" / "tiny" / name))["embeddings"]
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=1e-6)


@pytest.mark.parametrize("recipe", ["mxbai-128d.toml", "mxbai-256d.toml", "mxbai-512d.toml"])
def test_mxbai_recipes_run_end_to_end_on_an_mxbai_shaped_tiny_bert(
    data: dict[str, Path], tmp_path: Path, run_cli: RunCli, recipe: str
) -> None:
    """24 layers, CLS pooling and a query prompt, tiny widths, in place of mxbai-embed-large-v1."""
    bert = make_bert(
        tmp_path / "mxbai", layers=24, pooling="cls", prompts={"query": MXBAI_QUERY}, max_seq_length=64
    )
    small = [
        "--set", "featurize.max_sentences=150", "--set", "featurize.shard_size=50",
        "--set", "distill.dims=8", "--set", "train.epochs=1", "--set", "train.batch_size=16",
        "--set", "train.val_fraction=0.1", "--set", "export.check_sentences=100",
        "--set", "export.min_mean_cosine=0.99", "--set", "export.min_cosine=0.9",
        "--set", "eval.speed_sentences=20",
    ]  # fmt: skip
    args = run_args(data, tmp_path / "work", *small, recipe=recipe)
    args[args.index("--teacher") + 1] = str(bert)
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert list(stage_lines(proc.stdout)) == ["quantize", "featurize", "distill", "train", "export", "eval"]
    name = recipe.removesuffix(".toml")
    summary = json.loads((tmp_path / "work" / name / pipeline.SUMMARY).read_text())
    teacher = Path(summary["stages"]["quantize"]["out"])
    info = manifest.read(teacher)
    assert info["scheme"]["name"] == "crush_middle"
    assert [r["bits"] for r in info["scheme"]["layers"]] == [16, 4, 16]
    feats = manifest.read(summary["stages"]["featurize"]["out"])
    assert feats["config"]["teacher"] == str(teacher) and feats["identity"]["pooling"] == "cls"
    model = StaticModel.from_pretrained(tmp_path / "work" / name / f"{name}-int8")
    assert model.dim == 8
    assert summary["scores"][f"{name}-int8"]["sentences_per_second"] > 0


def test_bad_recipes_and_flags_get_clear_errors_before_any_stage_runs(
    data: dict[str, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    work = tmp_path / "work"
    missing = run_cli(
        *run_args(data, work)[:4], "--corpus", tmp_path / "nope.txt", "--set", f"run.workdir={work}"
    )
    assert missing.returncode == 2 and "nope.txt does not exist" in missing.stderr
    assert not work.exists()  # nothing was written

    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nout = "elsewhere"\n')
    owned = run_cli("run", bad, "--corpus", data["corpus"])
    assert owned.returncode == 2 and "[train] out is set by potstill run" in owned.stderr

    bad.write_text("[trian]\nepochs = 2\n")
    typo = run_cli("run", bad, "--corpus", data["corpus"])
    assert typo.returncode == 2 and "unknown table(s) ['trian']" in typo.stderr

    no_stage = run_cli(*run_args(data, work, "--set", "epochs=2"))
    assert no_stage.returncode == 2 and "name the stage, e.g. --set train.epochs=3" in no_stage.stderr
    unknown = run_cli(*run_args(data, work, "--set", "train.epoch=2"))
    assert unknown.returncode == 2 and "unknown setting 'epoch'" in unknown.stderr

    args = run_args(data, work)
    args[args.index(f"eval.tasks={data['tasks']}")] = f"eval.tasks={tmp_path / 'no-tasks'}"
    no_tasks = run_cli(*args)
    assert no_tasks.returncode == 2 and "is not a folder; --set eval.tasks=DIR" in no_tasks.stderr
    assert not (work / "tiny").exists()


def test_features_name_keys_on_content_settings_only() -> None:
    from potstill.features.config import FeaturizeConfig

    a = FeaturizeConfig(corpus="/x/wiki.txt.gz", max_sentences=1000, out="a", batch_size=8)
    b = FeaturizeConfig(corpus="/y/wiki.txt.gz", max_sentences=1000, out="b", batch_size=64)
    assert store_name(a) == store_name(b)  # same content, other folders
    assert store_name(a).startswith("all-MiniLM-L6-v2-wiki-1000-")
    c = FeaturizeConfig(corpus="/x/wiki.txt.gz", max_sentences=1000, target="token-mean")
    assert store_name(c) != store_name(a)
    with pytest.raises(ConfigError, match="name the stage"):
        pipeline.plan(RECIPES / "tiny.toml", sets=["lr=1"])


def test_int8_model_loads_in_sentence_transformers(tiny_run: dict[str, Any]) -> None:
    from sentence_transformers import SentenceTransformer

    model = tiny_run["work"] / "tiny" / "tiny-int8"
    texts = ["the cat sat on the mat", "a quick brown fox"]
    st = SentenceTransformer(str(model), device="cpu")
    np.testing.assert_allclose(st.encode(texts), StaticModel.from_pretrained(model).encode(texts), atol=1e-5)


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.toml")))
def test_every_shipped_recipe_resolves_into_its_stages(recipe: str) -> None:
    plan = pipeline.plan(RECIPES / recipe)
    stages = [s.stage for s in plan.steps]
    assert stages[-4:] == ["distill", "train", "export", "eval"] and "featurize" in stages
    assert plan.folder.name == recipe.removesuffix(".toml")


@pytest.mark.parametrize("family", ["minilm", "mpnet", "mxbai"])
def test_recipes_of_one_teacher_share_their_feature_store_and_eval(family: str) -> None:
    """A second dims of one family reuses the first one's store: featurize is where the hours go."""
    plans = [pipeline.plan(p) for p in sorted(RECIPES.glob(f"{family}-*d.toml"))]
    assert len(plans) == 3
    by_stage = [{s.stage: s for s in plan.steps} for plan in plans]
    assert len({steps["featurize"].out for steps in by_stage}) == 1
    assert len({steps["featurize"].config for steps in by_stage}) == 1
    own = [steps["eval"].config.models[0] for steps in by_stage]  # each recipe's own model comes first
    assert all(m.startswith(str(p.folder)) for m, p in zip(own, plans, strict=True))
    assert len({(steps["eval"].config.tasks, steps["eval"].config.models[1:]) for steps in by_stage}) == 1
    dims = [steps["distill"].config.dims for steps in by_stage]
    assert sorted(dims) == sorted(set(dims)) and all(
        f"-{d}d" in str(p.folder) for p, d in zip(plans, dims, strict=True)
    )
