"""Distributed featurize, train and run: 2 local ranks of `mlx.launch` over MLX's ring backend
(TCP on loopback), as real subprocesses, against one plain process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, make_bert, run_cli
from safetensors.numpy import load_file
from test_featurize import write_corpus

from potstill import distributed
from potstill.features import store

RECIPES = REPO_ROOT / "recipes"
TRAIN_ATOL = 1e-4  # 2 ranks against 1 process: the gradient sums differ only in float32 order


def mlx_launch() -> str:
    found = shutil.which("mlx.launch", path=str(Path(sys.executable).parent)) or shutil.which("mlx.launch")
    if found is None:
        pytest.fail("mlx.launch is not installed beside this python (it comes with the mlx wheel)")
    return found


def free_ports(n: int) -> int:
    """A port p with p .. p+n-1 free on loopback (the ring backend listens on one per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + n >= 65535:
            continue
        try:
            socks = []
            for k in range(n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", port + k))
            return port
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free ports on loopback")


def launch_cmd(ranks: int, args: Sequence[str | Path]) -> list[str]:
    return [
        mlx_launch(), "-n", str(ranks), "--backend", "ring", "-p", str(free_ports(ranks)),
        sys.executable, "-m", "potstill.cli", *map(str, args),
    ]  # fmt: skip


def launch(ranks: int, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`mlx.launch -n RANKS python -m potstill.cli ARGS`. The launcher exits 0 even when a rank
    fails, so callers check what the ranks wrote and said."""
    return subprocess.run(
        launch_cmd(ranks, args),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def failed(proc: subprocess.CompletedProcess[str]) -> bool:
    return "exited with code" in proc.stderr or "was killed" in proc.stderr


def featurize_args(model: Path, corpus: Path, out: Path, shard_size: int = 10) -> list[str | Path]:
    return [
        "featurize",
        "--teacher",
        model,
        "--corpus",
        corpus,
        "--out",
        out,
        "--shard-size",
        str(shard_size),
    ]


def assert_same_store(one: Path, two: Path) -> None:
    """Shard for shard: the same texts, vectors within 1e-6, the same shards in the manifest."""
    m1, m2 = (json.loads((p / "manifest.json").read_text()) for p in (one, two))
    assert m1["shards"] == m2["shards"] and m1["counts"] == m2["counts"]
    assert m1["identity"] == m2["identity"] and m1["config"]["num_parts"] == m2["config"]["num_parts"] == 1
    for index in m1["shards"]:
        t1, e1 = store.read_shard(one, index)
        t2, e2 = store.read_shard(two, index)
        assert t1 == t2
        np.testing.assert_allclose(e1, e2, atol=1e-6)
    assert not store.shard_problem(two, m2["shards"][-1])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "c.txt", 75)


def test_outside_mlx_launch_there_is_one_rank() -> None:
    assert not distributed.launched()
    w = distributed.world()
    assert (w.rank, w.size, w.leader) == (0, 1, True)
    w.barrier()
    w.agree({"anything": 1}, "value")  # one rank agrees with itself, nothing is sent
    assert w.gather_bytes(b"x") == [b"x"] and w.share(7) == slice(0, 7)


def test_the_refusal_names_the_first_setting_that_differs() -> None:
    ours = {"teacher_weights_sha256": "ab", "corpus": {"min_words": 1, "seed": 0}}
    assert distributed.difference(ours, {**ours, "corpus": {"min_words": 3, "seed": 0}}) == (
        "corpus.min_words: 1 vs 3"
    )
    assert distributed.difference(ours, {"corpus": ours["corpus"]}) == "teacher_weights_sha256: 'ab' vs None"


def test_two_ranks_featurize_the_store_one_process_writes(
    tiny_bert: Path, corpus: Path, tmp_path: Path
) -> None:
    one = run_cli(*featurize_args(tiny_bert, corpus, tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = launch(2, *featurize_args(tiny_bert, corpus, tmp_path / "two"))
    assert not failed(two), two.stderr
    assert_same_store(tmp_path / "one", tmp_path / "two")
    info = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert info["distributed"]["ranks"] == 2 and info["shards"] == list(range(8))
    # each rank names its part: rank 0 has shards 0, 2, 4, 6 (40 texts), rank 1 the odd ones (35)
    assert "part 0/2: featurized 40 sentences in 4 shards (4 computed" in two.stderr
    assert "part 1/2: featurized 35 sentences in 4 shards (4 computed" in two.stderr
    again = launch(2, *featurize_args(tiny_bert, corpus, tmp_path / "two"))
    assert "(0 computed, 4 already complete" in again.stderr and not failed(again)


def test_a_streaming_hf_corpus_is_split_between_ranks_by_shard(
    tiny_bert: Path, corpus: Path, tmp_path: Path
) -> None:
    """`hf:` with a local dataset folder: the real `datasets` streaming path, offline."""
    pytest.importorskip("datasets")
    ds = tmp_path / "ds"
    ds.mkdir()
    lines = corpus.read_text(encoding="utf-8").splitlines()
    (ds / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    hf = f"hf:{ds}"
    one = run_cli(*featurize_args(tiny_bert, Path(hf), tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = launch(2, *featurize_args(tiny_bert, Path(hf), tmp_path / "two"))
    assert not failed(two), two.stderr
    assert_same_store(tmp_path / "one", tmp_path / "two")
    texts = [t for index in range(8) for t in store.read_shard(tmp_path / "two", index)[0]]
    assert texts == lines  # every sentence once, in corpus order


def rank_pid(rank: int, marker: str) -> int | None:
    """The pid of the rank `rank` process whose command line holds `marker` (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"potstill.cli" in cmd and marker.encode() in cmd and f"MLX_RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process in /proc")
def test_a_rank_killed_midway_resumes_on_relaunch_with_nothing_lost(tiny_bert: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "big.txt", 1500, seed=3)
    out = tmp_path / "two"
    args = featurize_args(tiny_bert, corpus, out, shard_size=10)  # 150 shards, 75 a rank
    launcher = subprocess.Popen(
        launch_cmd(2, args), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while not (out / "shard-00005.json").exists():  # rank 1 has written 3 of its shards
            assert launcher.poll() is None and time.time() < deadline, "the ranks ended too soon"
            time.sleep(0.005)
        pid = rank_pid(1, str(out))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        launcher.wait(timeout=60)  # the launcher stops rank 0 when rank 1 dies
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert not (out / "manifest.json").exists()
    kept = {i: (out / f"{store.shard_name(i)}.json").stat().st_mtime_ns for i in range(150)
            if store.shard_problem(out, i) is None}  # fmt: skip
    assert 3 <= sum(i % 2 for i in kept) < 75, "rank 1 was not stopped midway"
    again = launch(2, *args)
    assert not failed(again), again.stderr
    for i, mtime in kept.items():  # nothing complete was computed again
        assert (out / f"{store.shard_name(i)}.json").stat().st_mtime_ns == mtime
    computed = sum(int(line.split("(")[1].split(" computed")[0])
                   for line in again.stderr.splitlines() if "featurized" in line)  # fmt: skip
    assert computed == 150 - len(kept)
    one = run_cli(*featurize_args(tiny_bert, corpus, tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    assert_same_store(tmp_path / "one", out)
    assert not list(out.glob("*tmp*"))


def test_a_rank_with_another_teacher_is_refused_by_name(
    tiny_bert: Path, corpus: Path, tmp_path: Path
) -> None:
    other = make_bert(tmp_path / "teacher1", seed=7)  # same shape, other weights
    shutil.copytree(tiny_bert, tmp_path / "teacher0")
    script = (
        f"exec {sys.executable} -m potstill.cli featurize --teacher {tmp_path}/teacher$MLX_RANK "
        f"--corpus {corpus} --out {tmp_path / 'out'} --shard-size 10"
    )
    proc = subprocess.run(
        [mlx_launch(), "-n", "2", "--backend", "ring", "-p", str(free_ports(2)), "bash", "-c", script],
        capture_output=True, text=True, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, timeout=300,
        check=False,
    )  # fmt: skip
    assert other.is_dir() and failed(proc)
    assert "rank 1 has another store identity" in proc.stderr, proc.stderr
    assert "teacher_weights_sha256" in proc.stderr
    assert not list((tmp_path / "out").glob("shard-*"))


def table(folder: Path) -> np.ndarray:
    return load_file(str(folder / "model.safetensors"))["embeddings"]


def test_two_ranks_run_a_recipe_and_train_the_model_one_process_trains(
    tiny_bert: Path, corpus: Path, tmp_path: Path
) -> None:
    """`mlx.launch -n 2 potstill run`: featurize and train on both ranks, distill and export on
    rank 0; the same folders, and the trained tables agree with one process's within TRAIN_ATOL.
    Then a rank is killed in training and the relaunch resumes from rank 0's checkpoint."""
    big = write_corpus(tmp_path / "c.txt", 400, seed=5)
    common: list[str | Path] = [
        "run", RECIPES / "tiny.toml", "--teacher", tiny_bert, "--corpus", big, "--until", "export",
        "--set", "train.epochs=6",
    ]  # fmt: skip
    one = run_cli(*common, "--set", f"run.workdir={tmp_path / 'w1'}")
    assert one.returncode == 0, one.stderr
    two = launch(2, *common, "--set", f"run.workdir={tmp_path / 'w2'}")
    assert not failed(two), two.stderr
    r1, r2 = (tmp_path / w / "tiny" for w in ("w1", "w2"))
    assert sorted(p.name for p in r1.iterdir()) == sorted(p.name for p in r2.iterdir())
    for name in ("round1", "final"):
        a, b = table(r1 / "trained" / name), table(r2 / "trained" / name)
        np.testing.assert_allclose(a, b, atol=TRAIN_ATOL)
    rounds = json.loads((r2 / "trained" / "manifest.json").read_text())["rounds"]
    assert [r.get("ranks") for r in rounds] == [2, 2]
    summary = json.loads((r2 / "run.json").read_text())
    assert [s["status"] for s in summary["stages"].values()] == ["ran"] * 4
    assert two.stdout.count("run tiny (") == 1  # rank 0 alone reports the run

    # kill rank 1 once round 1 has its first checkpoint, relaunch: it resumes, and agrees again
    trained = tmp_path / "w3" / "tiny" / "trained"
    cmd = launch_cmd(2, [*common, "--set", f"run.workdir={tmp_path / 'w3'}"])
    launcher = subprocess.Popen(cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 240
        while not (trained / "round1" / "checkpoint" / "state.json").exists():
            assert launcher.poll() is None and time.time() < deadline
            time.sleep(0.005)
        pid = rank_pid(1, str(tmp_path / "w3"))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        launcher.wait(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert not (trained / "manifest.json").exists()
    again = launch(2, *common, "--set", f"run.workdir={tmp_path / 'w3'}")
    assert not failed(again), again.stderr
    assert "round1: resuming after epoch" in again.stderr
    np.testing.assert_allclose(table(trained / "final"), table(r1 / "trained" / "final"), atol=TRAIN_ATOL)
