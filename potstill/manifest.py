"""Stage manifests: what made an output folder, from what, and the checksums of what it holds.

`manifest.json` fields: format version, potstill and mlx versions, stage, resolved config and
its hash, inputs (paths + their manifest hashes), outputs (files + sha256), created time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A manifest is missing, unreadable, or does not match the files it describes."""


def sha256_file(path: Path) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("potstill", "mlx"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


@dataclass(frozen=True)
class Input:
    """An input of a stage: a path and, when it is a stage folder, its manifest hash."""

    path: str
    manifest_sha256: str | None = None

    @classmethod
    def of(cls, path: str | Path) -> Input:
        p = Path(path)
        m = manifest_path(p)
        return cls(str(p), sha256_file(m) if m.is_file() else None)


def manifest_path(target: Path) -> Path:
    """Where the manifest of an output lives: `DIR/manifest.json`, or `FILE.manifest.json`."""
    return target / MANIFEST if target.is_dir() else target.with_name(target.name + ".manifest.json")


def write(
    target: str | Path,
    stage: str,
    config: dict[str, Any],
    config_hash: str,
    inputs: list[Input],
    outputs: list[Path],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the manifest of `target` (a folder, or a single output file) atomically."""
    t = Path(target)
    root = t if t.is_dir() else t.parent
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "stage": stage,
        "config": config,
        "config_sha256": config_hash,
        "inputs": [{"path": i.path, "manifest_sha256": i.manifest_sha256} for i in inputs],
        "outputs": {str(p.relative_to(root)): sha256_file(p) for p in sorted(outputs)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if extra:
        data.update(extra)
    path = manifest_path(t)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read(target: str | Path) -> dict[str, Any]:
    """Read the manifest of a folder or output file."""
    t = Path(target)
    if not t.exists():
        raise ManifestError(f"{t} does not exist")
    path = t if t.name.endswith(".json") and t.is_file() else manifest_path(t)
    if not path.is_file():
        raise ManifestError(f"{t} has no manifest ({path.name}); was it written by potstill?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is unreadable: {e}") from e
    if data.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version {data.get('format_version')} != {FORMAT_VERSION}")
    return data


def verify(target: str | Path) -> list[str]:
    """Problems with the outputs a manifest lists (missing or changed files); empty when sound."""
    t = Path(target)
    data = read(t)
    root = t if t.is_dir() else t.parent
    problems = []
    for name, digest in data["outputs"].items():
        f = root / name
        if not f.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(f) != digest:
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems
