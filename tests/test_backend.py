"""The fast BLAS that `import potstill` loads for MLX: each check runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

LINUX_X86 = sys.platform == "linux" and platform.machine() == "x86_64"
needs_linux_x86 = pytest.mark.skipif(
    not LINUX_X86, reason="MKL from PyPI is a dependency on Linux x86_64 only"
)

STATE = """
import json, os
import potstill
from potstill.teacher import backend
s = backend.blas_state()
maps = open("/proc/self/maps").read() if os.path.exists("/proc/self/maps") else ""
import mlx.core  # after potstill, as it should be
print(json.dumps({"setting": s.setting, "library": s.library, "reason": s.reason,
                  "mapped": bool(s.library) and os.path.realpath(s.library) in maps,
                  "mkl_mapped": "libmkl_rt" in open("/proc/self/maps").read() if maps else None}))
"""


def _python(code: str, blas: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POTSTILL_BLAS"}
    if blas is not None:
        env["POTSTILL_BLAS"] = blas
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _state(blas: str | None = None) -> dict:
    proc = _python(STATE, blas)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_linux_x86
def test_import_loads_a_fast_blas():
    state = _state()
    assert state["setting"] == "auto"
    assert state["library"] is not None, state["reason"]
    assert os.path.isfile(state["library"]) and state["mapped"], "the library must be loaded in the process"


@needs_linux_x86
def test_an_explicit_library_path_is_used():
    lib = _state()["library"]
    state = _state(lib)
    assert (state["setting"], state["library"], state["mapped"]) == (lib, lib, True)
    assert "POTSTILL_BLAS names" in state["reason"]


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS set-up only acts on Linux")
def test_none_keeps_the_bundled_blas():
    state = _state("none")
    assert (state["setting"], state["library"]) == ("none", None)
    assert state["reason"].startswith("POTSTILL_BLAS=none")
    assert state["mkl_mapped"] is False  # nothing else loads MKL behind our back


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS set-up only acts on Linux")
def test_a_missing_library_fails_at_import_with_a_clear_error():
    proc = _python("import potstill", "/nonexistent.so")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("FileNotFoundError: POTSTILL_BLAS='/nonexistent.so' is not a file")
    assert "'auto' or 'none'" in last


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS set-up only acts on Linux")
def test_a_file_that_is_not_a_library_fails_at_import(tmp_path):
    fake = tmp_path / "libfake.so"
    fake.write_text("not an ELF file", encoding="utf-8")
    proc = _python("import potstill", str(fake))
    assert proc.returncode != 0
    assert f"OSError: POTSTILL_BLAS='{fake}' could not be loaded" in proc.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS set-up only acts on Linux")
def test_importing_mlx_first_logs_a_warning():
    warning = "mlx.core was imported before potstill"
    first = _python("import logging; logging.basicConfig(); import mlx.core; import potstill")
    assert first.returncode == 0 and warning in first.stderr, first.stderr
    assert "WARNING" in first.stderr
    after = _python("import logging; logging.basicConfig(); import potstill; import mlx.core")
    assert after.returncode == 0 and warning not in after.stderr, after.stderr


@needs_linux_x86
def test_mlx_matmuls_run_on_the_fast_blas():
    # The point of it all: MLX's own matmul gets much faster (~70 vs ~3 GFLOP/s on 2 cores).
    code = """
    from potstill.teacher import backend
    print(max(backend.matmul_gflops(512, 512, 512, repeats=4) for _ in range(3)))
    """
    speeds = {}
    for blas in ("auto", "none"):
        proc = _python(code, blas)
        assert proc.returncode == 0, proc.stderr
        speeds[blas] = float(proc.stdout.split()[-1])
    assert speeds["auto"] > 5 * speeds["none"], speeds


def test_openblas_ranks_first_on_amd_and_mkl_first_elsewhere():
    from pathlib import Path

    from potstill.teacher import backend

    mkl, openblas = Path("/venv/lib/libmkl_rt.so.2"), Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")
    assert backend.rank([mkl, openblas], backend.AMD) == [openblas, mkl]
    assert backend.rank([openblas, mkl], "GenuineIntel") == [mkl, openblas]
    assert backend.rank([mkl, openblas], "") == [mkl, openblas]


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="no /proc/cpuinfo")
def test_cpu_vendor_reads_proc_cpuinfo():
    from potstill.teacher import backend

    vendor = backend.cpu_vendor()
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        assert vendor and f"vendor_id\t: {vendor}" in fh.read()
