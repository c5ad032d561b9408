"""tokenlearn's featurized format, both ways: `feature_{i}.json` (texts) + `feature_{i}.npy`.

tokenlearn 0.2.1 writes, per batch file i, a JSON list of texts and a float32 array of their
embeddings. Import turns such a folder into a potstill store (one shard per file pair); export
writes one file pair per shard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from potstill import manifest
from potstill.features import store

_FEATURE = re.compile(r"^feature_(\d+)\.json$")


def export_tokenlearn(src: str | Path, out: str | Path) -> int:
    """Write a potstill store as tokenlearn files; returns the number of texts."""
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, (texts, emb) in enumerate(store.iter_store(src)):
        (dest / f"feature_{i}.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        np.save(dest / f"feature_{i}.npy", emb)
        n += len(texts)
    return n


def import_tokenlearn(src: str | Path, out: str | Path) -> int:
    """Make a potstill store from a tokenlearn featurized folder; returns the number of texts."""
    folder = Path(src)
    pairs = sorted(
        (int(m.group(1)), p) for p in folder.glob("feature_*.json") if (m := _FEATURE.match(p.name))
    )
    if not pairs:
        raise store.StoreError(f"{folder} has no feature_*.json files: not a tokenlearn features folder")
    dest = Path(out)
    dims = None
    shards: list[int] = []
    total = 0
    written: list[Path] = []
    for shard, (i, text_file) in enumerate(pairs):
        npy = folder / f"feature_{i}.npy"
        if not npy.is_file():
            raise store.StoreError(f"{text_file} has no matching {npy.name}")
        try:
            texts = json.loads(text_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise store.StoreError(f"{text_file} is not a JSON list of texts: {e}") from e
        emb = np.load(npy).astype(np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise store.StoreError(f"{npy} has shape {emb.shape}, expected ({len(texts)}, dims)")
        if dims is None:
            dims = emb.shape[1]
            store.claim(dest, {"teacher": f"tokenlearn import of {folder.name}", "dims": dims})
        elif emb.shape[1] != dims:
            raise store.StoreError(f"{npy} has {emb.shape[1]} dims, earlier files {dims}")
        store.write_shard(dest, shard, [str(t) for t in texts], emb)
        written += [dest / f"{store.shard_name(shard)}{s}" for s in (".jsonl", ".npy", ".json")]
        shards.append(shard)
        total += len(texts)
    manifest.write(
        dest,
        "featurize",
        {"imported_from": str(folder), "format": "tokenlearn"},
        "",
        [manifest.Input(str(folder))],
        [dest / store.IDENTITY, *written],
        extra={
            "identity": store.read_identity(dest),
            "shards": shards,
            "total_shards": len(shards),
            "num_parts": 1,
            "part": 0,
            "counts": {"sentences": total},
        },
    )
    return total
