"""potstill: distill a sentence-embedding transformer into a static model2vec model, with MLX."""

from __future__ import annotations

from potstill.teacher.backend import setup_blas

# Before anything imports mlx.core: give MLX a fast BLAS on Linux CPU (FINDINGS.md).
setup_blas()

from potstill.teacher.teacher import Teacher  # noqa: E402  (after the BLAS set-up, on purpose)

__version__ = "0.1.0"

__all__ = ["Teacher", "__version__"]
