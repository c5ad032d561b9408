"""Reading text lines with one input policy for every stage.

Empty lines are skipped and counted. A line that is not valid UTF-8 is an error naming file and
line, or, with `skip_invalid`, skipped and counted. `.gz` files are read transparently.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO


class InputError(ValueError):
    """Input text that cannot be read as the policy requires; the message names file and line."""


@dataclass
class LineStats:
    """What was read and skipped, by reason."""

    read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def summary(self) -> str:
        parts = [f"{self.read} texts"] + [f"{n} skipped ({why})" for why, n in sorted(self.skipped.items())]
        return ", ".join(parts)


def open_binary(path: Path) -> BinaryIO:
    """Open a file (gzip when it ends in .gz), with an error that names it."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        raise InputError(f"{path} is a folder; pass a text file (one text per line)")
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # type: ignore[return-value]
    except OSError as e:
        raise InputError(f"cannot read {path}: {e}") from e


def iter_lines(path: str | Path, stats: LineStats, *, skip_invalid: bool = False) -> Iterator[str]:
    """Yield the non-empty lines of a text file (stripped), applying the input policy."""
    p = Path(path)
    with open_binary(p) as fh:
        try:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    if skip_invalid:
                        stats.skip("invalid UTF-8")
                        continue
                    raise InputError(
                        f"{p}:{lineno}: invalid UTF-8 (byte {e.start}: {e.reason}); fix the file "
                        "or pass --skip-invalid to skip such lines"
                    ) from e
                if not text:
                    stats.skip("empty")
                    continue
                stats.read += 1
                yield text
        except (OSError, EOFError) as e:  # e.g. a truncated or corrupt .gz
            raise InputError(f"cannot read {p}: {e}") from e


def read_lines(path: str | Path, *, skip_invalid: bool = False) -> tuple[list[str], LineStats]:
    """All non-empty lines of a file, with the counts of what was skipped."""
    stats = LineStats()
    return list(iter_lines(path, stats, skip_invalid=skip_invalid)), stats
