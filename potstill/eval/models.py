"""The models under evaluation behind mteb 2.x's encoder protocol.

`StaticEncoder` wraps a model2vec folder (`StaticModel.encode`, as users run it), and
`TeacherEncoder` the MLX teacher (`Teacher.encode`). Both take every text of mteb's data loader,
embed them in one call and return float32 rows in input order; cosine similarity is declared in
their mteb metadata. Each also knows its label, source, width and size on disk for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from model2vec import StaticModel
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction

from potstill.teacher import checkpoint
from potstill.teacher.teacher import Teacher

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.types import PromptType


logger = logging.getLogger(__name__)

MODEL2VEC_FILES = ("config.json", "model.safetensors", "tokenizer.json")
TOKENIZER_FILES = ("config.json", "tokenizer.json", "vocab.txt")


class ModelLoadError(ValueError):
    """A model to evaluate cannot be found or read; the message says what to pass instead."""


def files_size(paths: Iterable[Path]) -> int:
    """Bytes on disk of the given files."""
    return sum(p.stat().st_size for p in paths)


class Encoder(AbsEncoder):
    """A model under evaluation: mteb's encoder protocol plus what the report needs."""

    kind = "model"
    mteb_model_meta: ModelMeta  # always set (AbsEncoder allows None; mteb's protocol does not)

    def __init__(
        self, label: str, source: str, dim: int, size_bytes: int, prompts: dict[str, str] | None = None
    ):
        self.label = label
        self.source = source
        self.dim = dim
        self.size_bytes = size_bytes
        self.model_prompts = prompts or None
        self.mteb_model_meta = ModelMeta.create_empty(
            {
                "name": f"potstill/{label}",
                "revision": "local",
                "embed_dim": dim,
                "similarity_fn_name": ScoringFunction.COSINE,
                "framework": ["NumPy"],
            }
        )

    def encode_texts(self, texts: Sequence[str], prompt: str | None = None) -> np.ndarray:
        """Embed texts: float32 (len(texts), dim), in input order."""
        raise NotImplementedError

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """mteb's entry point: all texts of the data loader, embedded in one call."""
        texts = [text for batch in inputs for text in batch["text"]]
        prompt = self.get_prompt_name(task_metadata, prompt_type)
        logger.debug(
            "%s: encoding %d texts for %s (prompt %s)", self.label, len(texts), task_metadata.name, prompt
        )
        return self.encode_texts(texts, prompt)


class StaticEncoder(Encoder):
    """A model2vec static model."""

    kind = "static"

    def __init__(self, label: str, folder: Path, model: StaticModel):
        size = files_size(folder / f for f in MODEL2VEC_FILES)
        super().__init__(label, str(folder), int(model.dim), size)
        self.model = model

    @classmethod
    def load(cls, folder: str | Path, label: str | None = None) -> StaticEncoder:
        """Load a model2vec folder (config.json, model.safetensors, tokenizer.json)."""
        path = Path(folder).expanduser()
        need = ", ".join(MODEL2VEC_FILES)
        if not path.is_dir():
            raise ModelLoadError(f"model {folder} is not a folder; pass a model2vec folder ({need})")
        missing = [f for f in MODEL2VEC_FILES if not (path / f).is_file()]
        if missing:
            raise ModelLoadError(
                f"model folder {path} lacks {', '.join(missing)}; a model2vec folder holds {need}"
            )
        try:
            model = StaticModel.from_pretrained(path)
        except Exception as e:  # model2vec raises many kinds; all mean the folder is unreadable
            raise ModelLoadError(f"cannot load model2vec folder {path}: {e}") from e
        return cls(label or path.name, path, model)

    def encode_texts(self, texts: Sequence[str], prompt: str | None = None) -> np.ndarray:
        # One process: model2vec's multiprocessing (> 10K texts) would fork a process that holds
        # MLX and torch, and speed is measured single-process too.
        emb = self.model.encode(list(texts), use_multiprocessing=False)
        return np.asarray(emb, dtype=np.float32)


class TeacherEncoder(Encoder):
    """The MLX teacher; prompts come from its checkpoint, chosen as mteb chooses them."""

    kind = "teacher"

    def __init__(self, label: str, teacher: Teacher, batch_size: int):
        files = checkpoint.weight_files(teacher.folder)
        files += [teacher.folder / f for f in TOKENIZER_FILES if (teacher.folder / f).is_file()]
        super().__init__(
            label, str(teacher.folder), teacher.dim, files_size(files), dict(teacher.meta.prompts)
        )
        self.teacher = teacher
        self.batch_size = batch_size

    @classmethod
    def load(cls, id_or_path: str, batch_size: int = 64, max_seq_length: int | None = None) -> TeacherEncoder:
        """Load the teacher (hub id or folder) with `Teacher.load`."""
        teacher = Teacher.load(id_or_path, max_seq_length=max_seq_length)
        return cls(f"{Path(str(id_or_path)).name} (teacher)", teacher, batch_size)

    def encode_texts(self, texts: Sequence[str], prompt: str | None = None) -> np.ndarray:
        return self.teacher.encode(list(texts), batch_size=self.batch_size, prompt=prompt)


def unique_labels(paths: Sequence[str]) -> list[str]:
    """Labels for model folders: the folder name, with parents added until the labels differ."""
    parts = [Path(p).expanduser().resolve().parts for p in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label}#{i}" for i, label in enumerate(labels)]
