"""`potstill doctor`: platform, MLX device, BLAS library, measured matmul GFLOP/s."""

from __future__ import annotations

import argparse

from potstill.teacher.backend import doctor_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    for key, value in doctor_report().items():
        print(f"{key:>26}: {value}")
    return 0
