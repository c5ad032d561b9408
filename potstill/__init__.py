"""potstill: distill a sentence-embedding transformer into a static model2vec model, with MLX."""

from __future__ import annotations

from potstill.teacher.backend import setup_blas

# Before anything imports mlx.core: give MLX a fast BLAS on Linux CPU (FINDINGS.md).
setup_blas()

__version__ = "0.1.0"

__all__ = ["Teacher", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy: `import potstill` stays cheap and does not import mlx.core itself.
    if name == "Teacher":
        from potstill.teacher.teacher import Teacher

        return Teacher
    raise AttributeError(f"module 'potstill' has no attribute {name!r}")
