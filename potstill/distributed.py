"""The ranks of a job started by `mlx.launch` (MLX's distributed runtime), and the few collectives
the stages need: a barrier, agreeing on a value, and the rank's share of a batch.

Outside `mlx.launch` there is one rank and nothing here communicates, so a plain command behaves
as it always has. Under `mlx.launch -n N` (or `--hosts`/`--hostfile`) every process runs the same
command; `mx.distributed.init()` joins them over the backend the launcher picked (ring over TCP
everywhere, NCCL on CUDA, MPI, JACCL). A collective waits for every rank, and the launcher stops
the other ranks when one fails, so an error on one rank ends the job instead of hanging it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

logger = logging.getLogger(__name__)

# set in each process by mlx.launch (ring, NCCL, JACCL) or by mpirun (MPI)
LAUNCH_ENV = ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


class DistributedError(ValueError):
    """The ranks of one job disagree (another teacher, other settings, other folders)."""


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank `rank` of `size` (0 of 1 outside mlx.launch)."""

    rank: int = 0
    size: int = 1
    group: Any = None  # mx.distributed.Group when size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: the rank that writes what all ranks share (manifests, checkpoints, models)."""
        return self.rank == 0

    @property
    def label(self) -> str:
        return f"rank {self.rank}/{self.size}"

    def barrier(self) -> None:
        """Return once every rank has reached this call."""
        if self.size > 1:
            mx.eval(mx.distributed.all_sum(mx.array(1, dtype=mx.int32), group=self.group))

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's `data`, in rank order (on every rank)."""
        if self.size == 1:
            return [data]
        lengths = mx.distributed.all_gather(mx.array([len(data)], dtype=mx.int32), group=self.group)
        sizes = [int(n) for n in np.asarray(lengths)]
        padded = np.zeros(max(max(sizes), 1), dtype=np.uint8)  # all_gather needs equal shapes
        padded[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        joined = np.asarray(mx.distributed.all_gather(mx.array(padded), group=self.group))
        rows = joined.reshape(self.size, -1)
        return [rows[r, : sizes[r]].tobytes() for r in range(self.size)]

    def agree(self, value: Any, what: str) -> None:
        """Refuse to go on unless every rank holds the same JSON-able `value`; the error (raised on
        every rank, so none waits for the others) names the first rank that differs and how."""
        if self.size == 1:
            return
        mine = json.dumps(value, sort_keys=True, default=str).encode()
        values = [json.loads(b) for b in self.gather_bytes(mine)]
        for rank, theirs in enumerate(values[1:], start=1):
            if theirs != values[0]:
                raise DistributedError(
                    f"rank {rank} has another {what} than rank 0 ({difference(values[0], theirs)}); "
                    "every rank needs the same teacher files, corpus and settings"
                )

    def share(self, total: int) -> slice:
        """This rank's contiguous share of `total` items (sizes differ by at most one)."""
        return slice(self.rank * total // self.size, (self.rank + 1) * total // self.size)


def difference(ours: Any, theirs: Any, path: str = "") -> str:
    """The first place two JSON values differ, e.g. `corpus.min_words: 1 vs 3`."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key) != theirs.get(key):
                return difference(ours.get(key), theirs.get(key), f"{path}.{key}" if path else key)
    return f"{path or 'value'}: {ours!r} vs {theirs!r}"


def env_rank() -> str:
    """This process's rank as the launcher set it (for log lines, before the ranks connect)."""
    return next((os.environ[name] for name in LAUNCH_ENV if name in os.environ), "0")


def launched() -> bool:
    """Whether this process was started by mlx.launch (or mpirun) with more than one rank
    (`mlx.launch -n 1` leaves the ring's host file empty: one rank, nothing to join)."""
    if not any(name in os.environ for name in LAUNCH_ENV):
        return False
    hostfile = os.environ.get("MLX_HOSTFILE")
    if hostfile is not None and "MLX_WORLD_SIZE" not in os.environ:
        try:
            return bool(Path(hostfile).read_text(encoding="utf-8").strip())
        except OSError:
            return True  # let init() say what is wrong
    return True


@functools.cache
def world() -> World:
    """The job's ranks: joined once per process; one rank when not launched."""
    if not launched():
        return World()
    try:
        group = mx.distributed.init(strict=True)
    except RuntimeError as e:
        raise DistributedError(f"mlx.launch started this process but the ranks cannot connect: {e}") from e
    if group.size() == 1:
        return World()
    found = World(group.rank(), group.size(), group)
    logger.debug("joined the job as %s", found.label)
    return found
