"""The model card: README.md of an exported model, with front matter that the hub and model2vec read.

Front matter: library_name model2vec, the teacher's licence (else `other`), base_model when the
teacher is a hub id, potstill's tags, pipeline_tag sentence-similarity. Body: what the model is,
how to load it, teacher and corpus with their licences (`potstill.export.lineage`), rows x dims, dtype,
size, the export's reload check, the stages behind it, the evaluation section (empty between
its markers until `potstill eval` fills it: `potstill.eval.card`), and the recipe verbatim.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCardData
from safetensors import safe_open

from potstill.eval.card import EVAL_BEGIN, EVAL_END
from potstill.export.lineage import (
    README,
    Lineage,
    corpus_licence,
    lineage,
    read_manifest,
    teacher_hub_id,
    teacher_licence,
)

TAGS = ["embeddings", "static-embeddings", "sentence-transformers", "model2vec", "potstill"]
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ModelFacts:
    """What the folder itself says: table shape, dtype, size, and the export's reload check."""

    rows: int
    dims: int
    tokens: int | None
    dtype: str
    vocab_quantize: int | None
    has_weights: bool
    st_bytes: int | None  # the int8 copy in 0_StaticEmbedding/ for sentence-transformers, if any
    bytes: int
    check: dict[str, Any] | None
    repo: str | None


def model_facts(model_dir: Path) -> ModelFacts:
    """Read the facts from the safetensors header, config.json and the export manifest."""
    tensors = model_dir / "model.safetensors"
    if not tensors.is_file():
        raise ValueError(f"{model_dir} has no model.safetensors; write the card into a model2vec folder")
    with safe_open(str(tensors), framework="numpy") as f:
        names = set(f.keys())
        rows, dims = f.get_slice("embeddings").get_shape()
        dtype = str(f.get_slice("embeddings").get_dtype())
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    st_copy = model_dir / "0_StaticEmbedding" / "model.safetensors"
    info = read_manifest(model_dir) or {}
    is_export = info.get("stage") == "export"
    export = info.get("config") or {} if is_export else {}
    return ModelFacts(
        rows=int(rows),
        dims=int(dims),
        tokens=info.get("tokens"),
        dtype=str(config.get("embedding_dtype") or dtype),
        vocab_quantize=config.get("vocabulary_quantization"),
        has_weights="weights" in names,
        st_bytes=st_copy.stat().st_size if st_copy.is_file() else None,
        bytes=tensors.stat().st_size,
        check=info.get("check") if is_export else None,
        repo=export.get("push_to_hub"),
    )


def _front_matter_yaml(licence: str | None, base_model: str | None, name: str) -> str:
    data = ModelCardData(
        model_name=name,
        base_model=base_model,
        license=licence or "other",
        library_name="model2vec",
        pipeline_tag="sentence-similarity",
        tags=list(TAGS),
    )
    return data.to_yaml()


def usage(load_id: str, st_loads: bool) -> list[str]:
    """The model2vec and sentence-transformers snippets."""
    texts = '["It\'s dangerous to go alone!", "It\'s a secret to everybody."]'
    lines = [
        "## Usage",
        "",
        "```python",
        "from model2vec import StaticModel",
        "",
        f'model = StaticModel.from_pretrained("{load_id}")',
        f"embeddings = model.encode({texts})",
        "```",
        "",
    ]
    if not st_loads:
        return [
            *lines,
            "This int8 folder has no `0_StaticEmbedding/` copy (exported with `sentence_transformers = "
            "false`), and sentence-transformers cannot hold an int8 table: load it with model2vec, or "
            "export again with the copy (the default) or as float16 for sentence-transformers.",
            "",
        ]
    return [
        *lines,
        "With sentence-transformers:",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{load_id}")',
        f"embeddings = model.encode({texts})",
        "```",
        "",
    ]


def _named(value: str | None, licence: str | None) -> str:
    return f"`{value}` (licence: {licence or UNKNOWN})" if value else UNKNOWN


def facts_table(
    facts: ModelFacts, origin: Lineage, teacher_lic: str | None, corpus_lic: str | None
) -> list[str]:
    """The model's table: teacher, corpus, shape, dtype, size, reload check."""
    shape = f"{facts.rows:,} x {facts.dims}"
    if facts.tokens is not None and facts.tokens != facts.rows:
        shape += f" ({facts.tokens:,} tokens)"
    clusters = (
        f"{facts.vocab_quantize:,} clusters (`mapping` + `weights`)" if facts.vocab_quantize else "none"
    )
    rows = [
        "| | |",
        "|---|---|",
        f"| teacher | {_named(origin.teacher, teacher_lic)} |",
        f"| corpus | {_named(origin.corpus, corpus_lic)} |",
        f"| rows x dims | {shape} |",
        f"| dtype | {facts.dtype}"
        + (" (one global scale; `normalize: true`)" if facts.dtype == "int8" else "")
        + " |",
        f"| vocabulary quantization | {clusters} |",
        f"| model.safetensors | {facts.bytes / 1e6:.2f} MB ({facts.bytes:,} bytes) |",
    ]
    if facts.st_bytes is not None:
        rows.append(
            f"| 0_StaticEmbedding/ | {facts.st_bytes / 1e6:.2f} MB: the same int8 table with its scale as "
            "`weights`, read by sentence-transformers (model2vec reads the root files) |"
        )
    if facts.check:
        c = facts.check
        rows.append(
            f"| reload check | cosine to the float model on {c['sentences']:,} sentences: "
            f"mean {c['mean_cosine']:.5f}, min {c['min_cosine']:.5f} |"
        )
    return rows


def _recipe_section(recipe: str) -> list[str]:
    path = Path(recipe)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"recipe {path} cannot be read for the model card: {e}") from e
    fence = "````" if "```" in text else "```"
    return ["## Recipe", "", f"`{path.name}`:", "", f"{fence}toml", text.rstrip("\n"), fence, ""]


def render_card(model_dir: Path, *, name: str, recipe: str | None = None) -> str:
    """README.md's text."""
    facts = model_facts(model_dir)
    origin = lineage(model_dir)
    teacher_lic, corpus_lic = teacher_licence(origin.teacher), corpus_licence(origin.corpus)
    base_model = teacher_hub_id(origin.teacher)
    # model2vec `weights` (at the root or in the 0_StaticEmbedding/ copy) make ST fold int8 to float32
    st_loads = facts.dtype != "int8" or facts.has_weights or facts.st_bytes is not None
    parts = [
        "---",
        _front_matter_yaml(teacher_lic, base_model, name),
        "---",
        "",
        f"# {name}",
        "",
        "A static embedding model in the [model2vec](https://github.com/MinishLab/model2vec) format, "
        + (
            f"distilled by potstill from the sentence transformer `{origin.teacher}`"
            if origin.teacher
            else "exported by potstill (its manifests do not record the teacher)"
        )
        + ": a sentence's embedding is the normalized mean of its tokens' vectors, so encoding needs "
        "no transformer and no GPU.",
        "",
        *usage(facts.repo or name, st_loads),
        "## Model",
        "",
        *facts_table(facts, origin, teacher_lic, corpus_lic),
        "",
    ]
    if len(origin.stages) > 1:  # the first is this folder (during export: OUT.partial)
        parts += ["Made by these potstill stages, newest first:", ""]
        parts += [f"- {stage}: `{folder}`" for stage, folder in origin.stages[1:]]
        parts += [""]
    parts += [EVAL_BEGIN, EVAL_END, ""]  # `potstill eval` fills the scores in here
    if recipe:
        parts += _recipe_section(recipe)
    parts += [
        "## Licence",
        "",
        f"Teacher: {_named(origin.teacher, teacher_lic)}. Corpus: {_named(origin.corpus, corpus_lic)}. "
        "The vectors derive from both: check their licences before you redistribute the model.",
        "",
    ]
    return "\n".join(parts)


def write_card(model_dir: Path, *, name: str | None = None, recipe: str | None = None) -> Path:
    """Write (or rewrite) `model_dir/README.md`; `name` defaults to the folder name, `recipe` is
    quoted verbatim. The evaluation section is left empty between its markers for `potstill eval`."""
    model_dir = Path(model_dir)
    text = render_card(model_dir, name=name or model_dir.name, recipe=recipe)
    path = model_dir / README
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
