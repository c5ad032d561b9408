"""Encoder worker processes: on a multi-core CPU, one process per core runs whole batches.

Why processes: in one process, MLX CPU streams (one per core) do not scale; the same batches
spread over one single-stream process per core do (`benchmarks/teacher_speed.py`, the
"in-process streams" and "worker processes" rows). So `Teacher.encode_ids` hands a large job to a
`Pool` of worker processes.

Each worker loads an exact copy of the parent's teacher (`Teacher.save` writes a folder that
`Teacher.load` reads back exactly; the copy is deleted once every worker has loaded it), runs one
MLX stream with a one-thread BLAS, and answers padded batches with their pooled embeddings. Every
batch is computed as the in-process path computes it, so the embeddings are the same bits.

Workers are started as `python -m potstill.teacher.workers` (so `teacher.py` imports this module
only when it starts a pool), not by `multiprocessing`'s spawn (which re-runs the user's main
script when it lacks an `if __name__ == "__main__"` guard), and
talk to the parent over a private socket pair. A worker exits when the pool is closed or its
parent dies (its socket reads end-of-file), ignores Ctrl-C (the parent handles it), and a worker
that fails or dies fails the job with its reason: nothing is silently recomputed elsewhere.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np

from potstill.teacher.backend import ENV_VAR as BLAS_ENV
from potstill.teacher.backend import blas_state, blas_threads
from potstill.teacher.teacher import WORKERS_ENV, Teacher

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # loading a large teacher from a slow disk
IN_FLIGHT = 2  # batches queued per worker, so none waits while the parent reads a result

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]  # (indices into the job, tokens, mask), int32


class WorkerError(RuntimeError):
    """An encoder worker failed to start, raised while encoding, or died."""


class Pool:
    """`n` worker processes, each holding a copy of one teacher."""

    def __init__(self, teacher: Teacher, n: int):
        if n < 1:
            raise ValueError(f"a worker pool needs n >= 1 processes, not {n}")
        started = time.perf_counter()
        snapshot = Path(tempfile.mkdtemp(prefix="potstill-teacher-"))
        self._procs: list[subprocess.Popen[bytes]] = []
        self._conns: list[Connection] = []
        try:
            teacher.save(snapshot)
            for _ in range(n):
                self._start(snapshot, teacher.dtype_name)
            self._await_ready()
        except BaseException:
            self.close()
            raise
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
        self.start_seconds = time.perf_counter() - started
        logger.info("%d encoder worker processes ready in %.1f s", n, self.start_seconds)

    @property
    def size(self) -> int:
        return len(self._conns)

    def _start(self, snapshot: Path, dtype: str) -> None:
        ours, theirs = socket.socketpair()
        env = os.environ | {
            BLAS_ENV: blas_state().library or "none",  # the parent's BLAS, so the same bits
            # One BLAS thread from the start (`blas_threads(1)` below holds it): a BLAS loaded
            # without these starts a thread per core in every worker, all of them idle.
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        cmd = [sys.executable, "-m", "potstill.teacher.workers", str(theirs.fileno()), str(snapshot), dtype]
        try:
            proc = subprocess.Popen(cmd, env=env, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._procs.append(proc)
        self._conns.append(Connection(ours.detach()))

    def _await_ready(self) -> None:
        pending = dict(zip(self._conns, self._procs, strict=True))
        deadline = time.monotonic() + START_TIMEOUT_S
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(
                    f"{len(pending)} encoder worker(s) did not load the teacher in {START_TIMEOUT_S:.0f} s"
                )
            for conn in _ready(list(pending), timeout=min(left, 1.0)):
                self._receive(conn, pending.pop(conn), "starting")

    def _receive(self, conn: Any, proc: subprocess.Popen[bytes], doing: str) -> tuple[Any, ...]:
        try:
            msg: tuple[Any, ...] = conn.recv()
        except (EOFError, OSError) as e:
            raise _stopped(proc, doing) from e
        if msg[0] == "error":
            raise WorkerError(f"encoder worker {proc.pid} failed while {doing}:\n{msg[-1]}")
        return msg

    def run(
        self, batches: Iterable[Batch], pooling: str, skip_leading: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Pool each batch on some worker; yields (indices, pooled float32) as batches finish."""
        todo = iter(batches)
        owner = dict(zip(self._conns, self._procs, strict=True))
        busy: dict[int, np.ndarray] = {}  # job id -> indices
        load = {conn: 0 for conn in self._conns}
        job = 0
        exhausted = False
        while True:
            for conn in self._conns:  # top every worker up to IN_FLIGHT batches
                while not exhausted and load[conn] < IN_FLIGHT:
                    batch = next(todo, None)
                    if batch is None:
                        exhausted = True
                        break
                    idx, tokens, mask = batch
                    try:
                        conn.send(("run", job, tokens, mask, pooling, skip_leading))
                    except OSError as e:
                        raise _stopped(owner[conn], "encoding") from e
                    busy[job] = idx
                    load[conn] += 1
                    job += 1
            if not busy:
                return
            for conn in _ready([c for c in self._conns if load[c]]):
                _, done, pooled = self._receive(conn, owner[conn], "encoding")
                load[conn] -= 1
                yield busy.pop(done), pooled

    def close(self) -> None:
        """Stop the workers (closing a socket ends its worker's loop)."""
        for conn in self._conns:
            conn.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._conns, self._procs = [], []


def _ready(conns: list[Connection], timeout: float | None = None) -> list[Connection]:
    """The connections among `conns` with a message (or end-of-file) to read."""
    return [cast(Connection, c) for c in wait(conns, timeout=timeout)]


def _stopped(proc: subprocess.Popen[bytes], doing: str) -> WorkerError:
    """The error for a worker whose socket closed: it died (killed, out of memory, a crash)."""
    try:
        code: int | str | None = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = "still running"
    return WorkerError(
        f"encoder worker {proc.pid} stopped while {doing} (exit code {code}; its error, if any, "
        f"is above). Run again (finished work is kept), or set {WORKERS_ENV}=0 to encode in-process"
    )


def _serve(fd: int, snapshot: str, dtype: str) -> None:
    """A worker's life: load the teacher, say so, then pool batches until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn = Connection(fd)
    try:
        teacher = Teacher.load(snapshot, dtype=getattr(mx, dtype))
        teacher.cpu_streams, teacher.workers = 1, 0
        conn.send(("ready", os.getpid()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    forwards: dict[tuple[str, int], Any] = {}
    with blas_threads(1):
        while True:
            try:
                _, job, tokens, mask, pooling, skip = conn.recv()
            except (EOFError, OSError):
                return  # the pool was closed, or the parent is gone
            reply: tuple[Any, ...]
            try:
                if (pooling, skip) not in forwards:
                    forwards[pooling, skip] = teacher._forward(pooling, skip)
                pooled = forwards[pooling, skip](mx.array(tokens), mx.array(mask))
                reply = ("done", job, np.array(pooled.astype(mx.float32)))
            except Exception:
                reply = ("error", job, traceback.format_exc())
            try:
                conn.send(reply)
            except OSError:
                return


if __name__ == "__main__":  # `python -m` has imported potstill first: the BLAS is set up
    _serve(int(sys.argv[1]), sys.argv[2], sys.argv[3])
