"""Real `python -m potstill.cli` runs in a subprocess on the tiny checkpoint."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys

import numpy as np
import pytest

from potstill.teacher.teacher import Teacher

QUERY = "Represent this sentence for searching relevant passages: "
LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING) \S+: ")


def _error_line(proc, command="encode") -> str:
    """The one error line of a failed run (log lines aside), after checking the exit code."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not LOG_LINE.match(ln)]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"potstill {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from conftest import make_bert

    return make_bert(tmp_path_factory.mktemp("cli") / "model", prompts={"query": QUERY})


@pytest.fixture
def texts_file(tmp_path, sentences):
    f = tmp_path / "texts.txt"
    f.write_text("\n".join([*sentences[:4], "", *sentences[4:]]) + "\n", encoding="utf-8")
    return f


def test_encode_writes_embeddings_and_a_manifest_that_inspect_verifies(
    run_cli, model, texts_file, sentences, tmp_path
):
    out = tmp_path / "out" / "emb.npy"
    proc = run_cli("encode", "--teacher", model, "--input", texts_file, "--out", out, "--batch-size", "3")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: {len(sentences)} x 64 float32" in proc.stdout
    assert f"{len(sentences)} texts, 1 skipped (empty)" in proc.stdout
    emb = np.load(out)
    assert emb.dtype == np.float32 and emb.shape == (len(sentences), 64)
    np.testing.assert_allclose(emb, Teacher.load(model).encode(sentences), atol=1e-5)

    data = json.loads((tmp_path / "out" / "emb.npy.manifest.json").read_text(encoding="utf-8"))
    assert data["stage"] == "encode"
    assert data["outputs"] == {"emb.npy": hashlib.sha256(out.read_bytes()).hexdigest()}
    assert data["config"]["batch_size"] == 3 and data["config"]["teacher"] == str(model)
    assert data["counts"] == {"texts": len(sentences), "skipped": {"empty": 1}}
    assert data["shape"] == [len(sentences), 64]
    assert (
        data["teacher"]["weights_sha256"]
        == hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()
    )
    assert data["inputs"][0]["path"] == str(texts_file)

    ok = run_cli("inspect", out)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == data
    np.save(out, emb * 2)
    changed = run_cli("inspect", out)
    assert changed.returncode == 1
    assert "problem: emb.npy: sha256 differs from the manifest" in changed.stdout
    out.unlink()
    gone = run_cli("inspect", out)
    assert gone.returncode == 2 and "does not exist" in _error_line(gone, "inspect")


def test_encode_with_prompt_and_max_seq_length(run_cli, model, texts_file, sentences, tmp_path):
    out = tmp_path / "q.npy"
    args = ["--teacher", model, "--input", texts_file, "--out", out]
    proc = run_cli("encode", *args, "--set", "prompt=query", "--max-seq-length", "12")
    assert proc.returncode == 0, proc.stderr
    want = Teacher.load(model, max_seq_length=12).encode(sentences, prompt="query")
    np.testing.assert_allclose(np.load(out), want, atol=1e-5)
    assert np.abs(want - Teacher.load(model).encode(sentences)).max() > 0.01


def _dry_run(run_cli, *args):
    proc = run_cli("encode", "--dry-run", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_dry_run_prints_the_resolved_config_with_precedence(run_cli, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[encode]\nteacher = "some/teacher"\nbatch_size = 8\nprompt = "query"\nmax_seq_length = 32\n',
        encoding="utf-8",
    )
    assert _dry_run(run_cli) == {
        "teacher": "sentence-transformers/all-MiniLM-L6-v2",
        "input": "",
        "out": "",
        "batch_size": 64,
        "prompt": None,
        "max_seq_length": None,
        "skip_invalid": False,
    }
    from_recipe = _dry_run(run_cli, "--recipe", recipe)
    assert (from_recipe["teacher"], from_recipe["batch_size"], from_recipe["prompt"]) == (
        "some/teacher",
        8,
        "query",
    )
    with_set = _dry_run(run_cli, "--recipe", recipe, "--set", "batch_size=16", "--set", "prompt=none")
    assert (with_set["batch_size"], with_set["prompt"], with_set["max_seq_length"]) == (16, None, 32)
    with_flag = _dry_run(
        run_cli, "--recipe", recipe, "--set", "batch_size=16", "--batch-size", "32", "--skip-invalid"
    )
    assert (with_flag["batch_size"], with_flag["prompt"], with_flag["skip_invalid"]) == (32, "query", True)


def test_an_unknown_recipe_key_is_an_error(run_cli, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[encode]\nbatch_sise = 8\n", encoding="utf-8")
    line = _error_line(run_cli("encode", "--dry-run", "--recipe", recipe))
    assert "unknown setting 'batch_sise' for EncodeConfig" in line
    line = _error_line(run_cli("encode", "--dry-run", "--set", "batch_size=big"))
    assert "batch_size='big' should be a int" in line


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-teacher", "does not exist"),
        ("pickle-teacher", "has only pickle weights (pytorch_model.bin)"),
        ("deberta-teacher", "model_type='deberta-v2' is not supported"),
        ("hub-offline", "could not fetch teacher 'someone/not-a-model'"),
        ("bad-utf8", ":2: invalid UTF-8"),
        ("missing-input", "does not exist"),
        ("no-input", "encode needs --input FILE and --out FILE.npy"),
        ("not-npy", "should end in .npy"),
    ],
)
def test_encode_errors_are_one_line_with_exit_code_2(
    run_cli, make_bert, tmp_path, texts_file, case, expected
):
    teacher = make_bert(tmp_path / "m", layers=1)
    inp, out, env = texts_file, tmp_path / "emb.npy", {}
    if case == "missing-teacher":
        teacher = tmp_path / "nowhere"
    elif case == "pickle-teacher":
        (teacher / "model.safetensors").rename(teacher / "pytorch_model.bin")
    elif case == "deberta-teacher":
        teacher = make_bert(tmp_path / "deberta", model_type="deberta-v2")
    elif case == "hub-offline":
        teacher = "someone/not-a-model"
        env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    elif case == "bad-utf8":
        inp = tmp_path / "bad.txt"
        inp.write_bytes(b"the cat\n\xff the dog\n")
    elif case == "missing-input":
        inp = tmp_path / "nothing.txt"
    elif case == "no-input":
        inp = ""
    elif case == "not-npy":
        out = tmp_path / "emb.txt"
    line = _error_line(
        run_cli("encode", "--teacher", teacher, "--input", inp, "--out", out, env=env, cwd=tmp_path)
    )
    assert expected in line
    assert not out.exists()
    if case == "hub-offline":
        assert "--teacher /path/to/model" in line
    if case == "bad-utf8":
        assert f"{inp}:2:" in line and "--skip-invalid" in line


def test_skip_invalid_skips_bad_lines_and_records_them(run_cli, model, tmp_path):
    inp = tmp_path / "bad.txt"
    inp.write_bytes(b"the cat\n\xff the dog\n\nthe fox\n")
    out = tmp_path / "emb.npy"
    proc = run_cli("encode", "--teacher", model, "--input", inp, "--out", out, "--skip-invalid")
    assert proc.returncode == 0, proc.stderr
    assert "2 texts, 1 skipped (empty), 1 skipped (invalid UTF-8)" in proc.stdout
    data = json.loads(out.with_name("emb.npy.manifest.json").read_text(encoding="utf-8"))
    assert data["counts"] == {"texts": 2, "skipped": {"empty": 1, "invalid UTF-8": 1}}
    assert data["config"]["skip_invalid"] is True
    np.testing.assert_allclose(np.load(out), Teacher.load(model).encode(["the cat", "the fox"]), atol=1e-5)


def test_doctor_prints_a_blas_line(run_cli):
    proc = run_cli("doctor")
    assert proc.returncode == 0, proc.stderr
    fields = dict(ln.strip().split(": ", 1) for ln in proc.stdout.splitlines() if ": " in ln)
    assert "blas" in fields and fields["blas"].strip()
    assert re.fullmatch(r"[\d.]+ GFLOP/s", fields["matmul 512x1024x1024 fp32"])
    if sys.platform == "linux" and platform.machine() == "x86_64":  # MKL from PyPI is a dependency
        assert fields["blas"] != "bundled (reference)", (
            "potstill found no fast BLAS: " + fields["blas reason"]
        )


def test_no_command_and_unknown_flags_are_usage_errors(run_cli):
    assert run_cli().returncode == 2
    proc = run_cli("encode", "--no-such-flag")
    assert proc.returncode == 2 and "unrecognized arguments: --no-such-flag" in proc.stderr
