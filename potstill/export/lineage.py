"""Where a model came from, read from the manifests, and the licences of its teacher and corpus.

`lineage` walks the model folder's manifest, its inputs' manifests and theirs (train -> distill
and featurize), down to the distill folder (`config.teacher`) and the featurize store
(`config.teacher`, `config.corpus`); a missing link ends the walk. Licences are only ever read
locally: the teacher's README.md front matter (a local folder, the packaged copy as
`Teacher.load` resolves it, or the Hugging Face cache) and a MANIFEST.txt beside the corpus file
(its `License:` line); `hf:allenai/c4` is ODC-BY. Nothing is downloaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache
from huggingface_hub.repocard import metadata_load

from potstill import manifest
from potstill.teacher.checkpoint import PACKAGED

README = "README.md"
KNOWN_CORPUS_LICENCES = {"hf:allenai/c4": "ODC-BY"}  # hf: prefix -> licence
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LICENCE_LINE = re.compile(r"^\s*licen[cs]e\s*:\s*(.+?)\s*$", re.IGNORECASE)


@dataclass
class Lineage:
    """Where a model came from: the stages behind it, its teacher and its corpus."""

    stages: list[tuple[str, str]] = field(default_factory=list)  # (stage, folder), the model first
    teacher: str | None = None
    corpus: str | None = None


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """A manifest, or None where there is none to read (the lineage ends there)."""
    try:
        return manifest.read(path)
    except (manifest.ManifestError, OSError):
        return None  # a hub id, a moved folder, a file from elsewhere: the link ends here


def lineage(model_dir: Path) -> Lineage:
    """Walk the manifests from `model_dir` back through their inputs (each folder once)."""
    found = Lineage()
    teachers: dict[str, str] = {}
    queue, seen = deque([str(model_dir)]), set()
    while queue:
        path = queue.popleft()
        key = os.path.realpath(path)
        data = None if key in seen else read_manifest(path)
        if data is None:
            continue
        seen.add(key)
        stage, config = str(data.get("stage")), data.get("config") or {}
        found.stages.append((stage, path))
        if config.get("teacher") and stage not in teachers:
            teachers[stage] = str(config["teacher"])
        if stage in ("featurize", "merge-features", "distill") and config.get("corpus") and not found.corpus:
            found.corpus = str(config["corpus"])
        queue.extend(str(i["path"]) for i in data.get("inputs", []) if i.get("path"))
    found.teacher = (
        teachers.get("distill") or teachers.get("featurize") or next(iter(teachers.values()), None)
    )
    return found


def _front_matter(readme: Path) -> dict[str, Any]:
    try:
        return metadata_load(readme) or {}
    except Exception:  # a README without (valid) YAML front matter says nothing about the licence
        return {}


def teacher_folder(teacher: str) -> Path | None:
    """The teacher's files on this machine, without downloading: a folder, the packaged copy
    (as `Teacher.load` resolves it), or the Hugging Face cache."""
    path = Path(teacher).expanduser()
    if path.is_dir():
        return path
    if teacher in PACKAGED:
        module, attr = PACKAGED[teacher]
        if importlib.util.find_spec(module) is not None:
            return Path(getattr(importlib.import_module(module), attr))
    if _HUB_ID.match(teacher):
        for name in (README, "config.json"):
            cached = try_to_load_from_cache(teacher, name)
            if isinstance(cached, str):
                return Path(cached).parent
    return None


def _saved_from(folder: Path) -> str | None:
    """The source a potstill-saved (e.g. quantized) teacher folder was made from."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    source = (config.get("potstill") or {}).get("source") if isinstance(config, dict) else None
    return str(source) if source and str(source) != str(folder) else None


def teacher_hub_id(teacher: str | None, depth: int = 3) -> str | None:
    """The teacher's hub id: the name itself, or what a saved teacher folder was made from."""
    if not teacher:
        return None
    folder = Path(teacher).expanduser()
    if folder.is_dir():
        source = _saved_from(folder)
        return teacher_hub_id(source, depth - 1) if source and depth > 0 else None
    return teacher if _HUB_ID.match(teacher) else None


def teacher_licence(teacher: str | None, depth: int = 3) -> str | None:
    """`license:` from the teacher's README.md front matter, found locally."""
    folder = teacher_folder(teacher) if teacher else None
    if folder is None:
        return None
    licence = _front_matter(folder / README).get("license") if (folder / README).is_file() else None
    if licence:
        return str(licence)
    source = _saved_from(folder)
    return teacher_licence(source, depth - 1) if source and depth > 0 else None


def corpus_licence(corpus: str | None) -> str | None:
    """The corpus licence: a known hub dataset, or a `License:` line in MANIFEST.txt beside the file."""
    if not corpus:
        return None
    for prefix, licence in KNOWN_CORPUS_LICENCES.items():
        if corpus.startswith(prefix):
            return licence
    notes = Path(corpus).expanduser().parent / "MANIFEST.txt"
    if corpus.startswith("hf:") or not notes.is_file():
        return None
    for line in notes.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LICENCE_LINE.match(line)
        if m:
            return m.group(1)
    return None
