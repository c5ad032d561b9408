"""The encoder worker processes: the same bits as in-process, started once, failing loudly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import pooling_config

from potstill.features.config import FeaturizeConfig
from potstill.features.featurize import featurize
from potstill.teacher import teacher as teacher_module
from potstill.teacher.teacher import Teacher, default_workers
from potstill.teacher.workers import WorkerError

TEXTS = [
    "the cat sat on the mat.",
    "a quick brown fox jumps over the lazy dog!",
    "hello world",
    "dogs",
    "the lazy cat played with the brown dog and the quick fox over and over again in the world.",
    "zyx qwv",
] * 7


def _pooled(folder: Path, workers: int, **load: object) -> Teacher:
    t = Teacher.load(folder, **load)  # type: ignore[arg-type]
    t.workers, t.pool_min_tokens = workers, 0
    return t


@pytest.mark.parametrize("pooling", ["mean", "cls", "token-mean"])
def test_workers_give_the_in_process_bits_in_input_order(tiny_bert, pooling):
    with_pool, alone = _pooled(tiny_bert, 2), _pooled(tiny_bert, 0)
    try:
        got = with_pool.encode(TEXTS, batch_size=4, pooling=pooling)
        assert with_pool._pool is not None and with_pool._pool.size == 2
        want = alone.encode(TEXTS, batch_size=4, pooling=pooling)
        assert alone._pool is None
        np.testing.assert_array_equal(got, want)
        # input order: the duplicated texts got the same rows as their first copies
        np.testing.assert_array_equal(got[6:12], got[:6])
    finally:
        with_pool.close()


def test_a_prompt_that_stays_out_of_the_mean_reaches_the_workers(tmp_path, make_bert):
    folder = make_bert(tmp_path / "m", prompts={"query": "hello world "})
    cfg = pooling_config(64, "mean", include_prompt=False)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with_pool, alone = _pooled(folder, 2), _pooled(folder, 0)
    try:
        got = with_pool.encode(TEXTS, batch_size=4, prompt="query")
        np.testing.assert_array_equal(got, alone.encode(TEXTS, batch_size=4, prompt="query"))
        assert not np.array_equal(got, alone.encode(TEXTS, batch_size=4))
    finally:
        with_pool.close()


def test_a_quantized_teacher_is_copied_exactly(tiny_bert):
    quant = {"bits": 8, "group_size": 32}
    with_pool, alone = _pooled(tiny_bert, 2, quantization=quant), _pooled(tiny_bert, 0, quantization=quant)
    try:
        np.testing.assert_array_equal(
            with_pool.encode(TEXTS, batch_size=4), alone.encode(TEXTS, batch_size=4)
        )
    finally:
        with_pool.close()


def test_the_pool_starts_for_a_large_job_only_and_is_kept(tiny_bert):
    t = Teacher.load(tiny_bert)
    t.workers = 2
    try:
        tokens = sum(map(len, t.tokenize(TEXTS)))
        t.pool_min_tokens = tokens + 1
        t.encode(TEXTS, batch_size=4)
        assert t._pool is None  # too small: in-process
        t.pool_min_tokens = tokens
        t.encode(TEXTS, batch_size=4)
        pool = t._pool
        assert pool is not None
        t.encode(TEXTS[:8], batch_size=4)  # a small job once the pool runs: the same pool
        assert t._pool is pool
        procs = list(pool._procs)
    finally:
        t.close()
    assert t._pool is None and all(p.poll() is not None for p in procs)


def test_a_worker_that_dies_fails_the_job_with_the_reason_and_the_next_job_starts_afresh(tiny_bert):
    t = _pooled(tiny_bert, 2)
    try:
        first = t.encode(TEXTS, batch_size=4)
        t._pool._procs[0].kill()
        with pytest.raises(WorkerError, match=r"stopped while encoding \(exit code -9"):
            t.encode(TEXTS, batch_size=4)
        assert t._pool is None
        np.testing.assert_array_equal(t.encode(TEXTS, batch_size=4), first)
    finally:
        t.close()


def test_a_worker_that_cannot_load_the_teacher_says_why(tiny_bert):
    t = _pooled(tiny_bert, 2)
    t.dtype = "mlx.core.no_such_dtype"  # type: ignore[assignment]
    with pytest.raises(WorkerError, match=r"(?s)failed while starting:.*no_such_dtype"):
        t.encode(TEXTS, batch_size=4)
    assert t._pool is None


def test_workers_leave_with_their_parent(tiny_bert, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from potstill.teacher.teacher import Teacher\n"
        f"t = Teacher.load({str(tiny_bert)!r})\n"
        "t.workers, t.pool_min_tokens = 2, 0\n"
        f"t.encode({TEXTS!r}, batch_size=4)\n"
        "print(' '.join(str(p.pid) for p in t._pool._procs), flush=True)\n"
        "time.sleep(600)\n",
        encoding="utf-8",
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_the_worker_setting(monkeypatch):
    monkeypatch.setenv("POTSTILL_TEACHER_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("POTSTILL_TEACHER_WORKERS", "two")
    with pytest.raises(ValueError, match="POTSTILL_TEACHER_WORKERS='two'"):
        default_workers()
    monkeypatch.delenv("POTSTILL_TEACHER_WORKERS")
    monkeypatch.setattr(teacher_module, "cpu_cores", lambda: 4)
    assert default_workers() == 4
    monkeypatch.setattr(teacher_module, "cpu_cores", lambda: 1)
    assert default_workers() == 0
    monkeypatch.setattr(teacher_module, "cpu_cores", lambda: 4)
    monkeypatch.setenv("MLX_RANK", "0")
    monkeypatch.setenv("MLX_WORLD_SIZE", "2")
    assert default_workers() == 0  # under mlx.launch the ranks divide the machine


def test_featurize_with_workers_writes_the_same_store(tiny_bert, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"{t} number {i}" for i, t in enumerate(TEXTS * 3)) + "\n", encoding="utf-8")
    stores = {}
    for workers in ("2", "0"):
        monkeypatch.setenv("POTSTILL_TEACHER_WORKERS", workers)
        monkeypatch.setattr(teacher_module, "POOL_MIN_TOKENS", 0)
        cfg = FeaturizeConfig(
            teacher=str(tiny_bert),
            corpus=str(corpus),
            out=str(tmp_path / f"w{workers}"),
            shard_size=40,
            batch_size=8,
        )
        stores[workers] = featurize(cfg)
    shards = sorted(p.name for p in stores["0"].glob("*.npy"))
    assert len(shards) == 4
    for name in shards:
        np.testing.assert_array_equal(np.load(stores["2"] / name), np.load(stores["0"] / name))
