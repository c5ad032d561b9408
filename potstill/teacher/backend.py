"""MLX set-up: a fast BLAS on Linux CPU, device choice, and a matmul probe.

MLX's Linux CPU wheel links the netlib *reference* BLAS (~3 GFLOP/s on a 512x1024 @ 1024x1024
fp32 matmul). Loading a real BLAS into the global symbol scope before ``mlx.core`` is imported
makes MLX's ``cblas_sgemm`` and LAPACK calls resolve to it instead (50-70x faster, FINDINGS.md).
``import potstill`` does this by itself; ``POTSTILL_BLAS=auto|none|/path/lib.so`` overrides.

This module must not import ``mlx`` at module level: it runs before MLX is loaded.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import platform
import shutil
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_VAR = "POTSTILL_BLAS"


@dataclass(frozen=True)
class BlasState:
    """Which BLAS MLX's CPU backend uses in this process, and why."""

    setting: str  # auto | none | a path
    library: str | None  # the loaded library's path, None when MLX keeps its bundled BLAS
    reason: str  # one line for logs and `potstill doctor`


_STATE: BlasState | None = None


def _prefixes() -> list[Path]:
    """Install prefixes where a pip-installed BLAS (`mkl`'s lib/libmkl_rt.so) may live."""
    seen: list[Path] = []
    for p in (sys.prefix, sys.exec_prefix, sysconfig.get_config_var("userbase") or "", sys.base_prefix):
        if p and Path(p) not in seen:
            seen.append(Path(p))
    return seen


AMD = "AuthenticAMD"
OPENBLAS_HINT = (
    "on AMD CPUs the teacher ran ~1.2x faster on a system OpenBLAS than on MKL "
    "(apt-get install libopenblas0-pthread; potstill then picks it)"
)


@functools.cache
def cpu_vendor() -> str:
    """The CPU's `vendor_id` (GenuineIntel, AuthenticAMD, ...) from /proc/cpuinfo; '' if unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def rank(libraries: list[Path], vendor: str) -> list[Path]:
    """BLAS libraries best first for this CPU: MKL before OpenBLAS, except on AMD CPUs.

    On an AMD EPYC (Zen 3) the MLX teacher ran 1.17x (MiniLM) and 1.24x (MPNet) faster on Debian's
    OpenBLAS 0.3.21 than on MKL 2026.2, in one run (BENCHMARKS.md, "Teacher speed")."""
    openblas_first = vendor == AMD
    return sorted(libraries, key=lambda p: ("openblas" in p.name) != openblas_first)


def candidate_libraries() -> list[Path]:
    """Fast BLAS libraries that MLX can use, best first for this CPU (`rank`): MKL from PyPI and a
    system OpenBLAS."""
    found: list[Path] = []
    for prefix in _prefixes():
        found += sorted(Path(p) for p in glob.glob(str(prefix / "lib" / "libmkl_rt.so*")))
    arch = platform.machine()
    multiarch = [f"/usr/lib/{arch}-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
    for d in multiarch:
        for pattern in ("libopenblas.so.0", "openblas-pthread/libopenblas.so.0", "libopenblas.so"):
            found += [Path(p) for p in glob.glob(os.path.join(d, pattern))]
    unique: list[Path] = []
    for f in found:
        if f.is_file() and f not in unique:
            unique.append(f)
    return rank(unique, cpu_vendor())


def _load(path: Path) -> None:
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)


def setup_blas() -> BlasState:
    """Load a fast BLAS into the global symbol scope before MLX, once per process.

    Returns the resulting state. Logs which library is active; warns when none is found, or when
    ``mlx.core`` was imported before potstill (then MLX may already be bound to its slow BLAS).
    """
    global _STATE
    if _STATE is not None:
        return _STATE
    setting = os.environ.get(ENV_VAR, "auto").strip() or "auto"
    if not sys.platform.startswith("linux"):
        _STATE = BlasState(setting, None, f"not needed on {sys.platform}: MLX uses the platform BLAS")
        return _STATE
    if setting.lower() == "none":
        _STATE = BlasState("none", None, f"{ENV_VAR}=none: MLX keeps its bundled reference BLAS (slow)")
        logger.info(_STATE.reason)
        return _STATE
    if "mlx.core" in sys.modules:
        logger.warning(
            "mlx.core was imported before potstill: MLX may stay on its bundled reference BLAS "
            "(~50x slower on CPU). Import potstill first, or set LD_PRELOAD to a fast BLAS."
        )
    if setting.lower() != "auto":
        path = Path(setting).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{ENV_VAR}={setting!r} is not a file; give the path of a BLAS shared library "
                f"(e.g. libopenblas.so.0 or libmkl_rt.so.2), 'auto' or 'none'"
            )
        try:
            _load(path)
        except OSError as e:
            raise OSError(f"{ENV_VAR}={setting!r} could not be loaded: {e}") from e
        _STATE = BlasState(setting, str(path), f"{ENV_VAR} names {path}")
        logger.info("BLAS for MLX: %s", path)
        return _STATE
    errors: list[str] = []
    for lib in candidate_libraries():
        try:
            _load(lib)
        except OSError as e:  # e.g. a dependency of the library is missing
            errors.append(f"{lib}: {e}")
            continue
        why = (
            "; on an AMD CPU OpenBLAS ranks before MKL"
            if "openblas" in lib.name and cpu_vendor() == AMD
            else ""
        )
        _STATE = BlasState("auto", str(lib), f"found {lib}{why}")
        logger.info("BLAS for MLX: %s", lib)
        return _STATE
    detail = ("; tried: " + "; ".join(errors)) if errors else ""
    _STATE = BlasState(
        "auto",
        None,
        "no fast BLAS found: MLX on CPU uses its bundled reference BLAS (~50x slower)" + detail,
    )
    logger.warning(
        "%s. Fix: `pip install mkl` (x86_64), or `apt-get install libopenblas0-pthread`, "
        "or set %s=/path/to/libblas.so",
        _STATE.reason,
        ENV_VAR,
    )
    return _STATE


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with the loaded BLAS (MKL or OpenBLAS) limited to `n` threads.

    Used when potstill runs one MLX stream per core: each stream's matmuls then take one core
    instead of all streams' BLAS calls fighting over every core. A no-op for other BLAS.
    """
    lib_path = blas_state().library
    lib = ctypes.CDLL(lib_path) if lib_path else None
    get = set_ = None
    if lib is not None and hasattr(lib, "MKL_Set_Num_Threads"):
        get, set_ = lib.MKL_Get_Max_Threads, lib.MKL_Set_Num_Threads
    elif lib is not None and hasattr(lib, "openblas_set_num_threads"):
        get, set_ = lib.openblas_get_num_threads, lib.openblas_set_num_threads
    if get is None or set_ is None:
        yield
        return
    before = int(get())
    set_(ctypes.c_int(n))
    try:
        yield
    finally:
        set_(ctypes.c_int(before))


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def jit_compiler() -> str | None:
    """The C++ compiler MLX's CPU `mx.compile` uses to fuse kernels (g++), or None."""
    return shutil.which("g++")


def blas_state() -> BlasState:
    """The BLAS state of this process (sets it up if that has not happened yet)."""
    return setup_blas()


def default_device() -> str:
    """'gpu' when MLX has a GPU backend (Metal or CUDA), else 'cpu'."""
    import mlx.core as mx  # lazy: mlx.core may load only after setup_blas() (module docstring)

    return "gpu" if mx.is_available(mx.gpu) else "cpu"


def on_cpu() -> bool:
    """True when MLX computes on the CPU in this process."""
    import mlx.core as mx  # lazy: mlx.core may load only after setup_blas() (module docstring)

    return mx.default_device() == mx.cpu


def matmul_gflops(m: int = 512, k: int = 1024, n: int = 1024, repeats: int = 10) -> float:
    """Measure an fp32 (m,k)@(k,n) matmul on MLX's default device, in GFLOP/s."""
    import mlx.core as mx  # lazy: mlx.core may load only after setup_blas() (module docstring)

    a = mx.random.normal((m, k))
    b = mx.random.normal((k, n))
    mx.eval(a, b)
    for _ in range(2):
        mx.eval(a @ b)
    start = time.perf_counter()
    for _ in range(repeats):
        mx.eval(a @ b)
    elapsed = time.perf_counter() - start
    return 2.0 * m * k * n * repeats / elapsed / 1e9


def doctor_report() -> dict[str, str]:
    """Platform, MLX device, BLAS library and a measured matmul speed, as strings."""
    import mlx.core as mx  # lazy: mlx.core may load only after setup_blas() (module docstring)

    state = blas_state()
    hints = {}
    if state.library and "mkl" in Path(state.library).name and cpu_vendor() == AMD:
        hints["blas hint"] = OPENBLAS_HINT
    return {
        "platform": f"{platform.system()} {platform.machine()} (python {platform.python_version()})",
        "cpu vendor": cpu_vendor() or "unknown",
        "mlx": getattr(mx, "__version__", "unknown"),
        "device": str(mx.default_device()),
        "gpu available": str(mx.is_available(mx.gpu)),
        "blas": state.library or "bundled (reference)",
        "blas reason": state.reason,
        "cpu cores": str(cpu_cores()),
        "jit compiler (mx.compile)": jit_compiler() or "none: compiled kernels run unfused (slower)",
        "matmul 512x1024x1024 fp32": f"{matmul_gflops():.1f} GFLOP/s",
    } | hints
