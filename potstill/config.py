"""Stage configs: one frozen dataclass per stage, filled from a TOML recipe, then overrides.

Precedence: command-line flags > recipe `[stage]` table > dataclass defaults. The resolved config
is printed by `--dry-run` and written into every output folder's manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")


class ConfigError(ValueError):
    """A recipe or an override does not fit a stage config; the message names key and fix."""


@dataclass(frozen=True)
class EncodeConfig:
    """`potstill encode`: embed the lines of a text file with the teacher."""

    teacher: str = "sentence-transformers/all-MiniLM-L6-v2"
    input: str = ""
    out: str = ""
    batch_size: int = 64
    prompt: str | None = None
    max_seq_length: int | None = None
    skip_invalid: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a TOML recipe into a dict of stage tables."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe {p} does not exist; pass a TOML file such as recipes/minilm-256d.toml")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"recipe {p} is not valid TOML: {e}") from e


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Coerce a recipe value or a `key=value` string to a field's annotated type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key) if len(inner) == 1 else value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}={value!r} should be true or false")
    if hint in (int, float, str):
        try:
            return hint(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{key}={value!r} should be a {hint.__name__}") from e
    if origin in (list, tuple) and isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
        return [_coerce(v, args[0], key) for v in items] if args else items
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def build(cls: type[C], *layers: dict[str, Any]) -> C:
    """Make a config from layered dicts, later ones overriding; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None and key in merged:
                continue  # an unset command-line flag does not erase the recipe's value
            if key not in names:
                raise ConfigError(f"unknown setting {key!r} for {cls.__name__}; known: {', '.join(names)}")
            merged[key] = _coerce(value, hints[key], key) if value is not None else None
    try:
        return cls(**merged)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from e


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """`--set key=value` pairs into a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} should be key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON-able data."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_hash(config: Any) -> str:
    """sha256 of the resolved config's canonical JSON."""
    return hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()


def stage_config(
    cls: type[C], section: str, recipe: str | Path | None, flags: dict[str, Any], sets: list[str] | None
) -> C:
    """Defaults < recipe[section] < `--set` < explicit flags (flags left None do not override)."""
    table = load_recipe(recipe).get(section, {}) if recipe else {}
    if not isinstance(table, dict):
        raise ConfigError(f"recipe {recipe}: [{section}] should be a table")
    explicit = {k: v for k, v in flags.items() if v is not None}
    return build(cls, table, parse_sets(sets), explicit)


@dataclass(frozen=True)
class EvalConfig:
    """`potstill eval`: MTEB scores, encode speed and size of static models (and a teacher)."""

    models: tuple[str, ...] = ()  # model2vec folders
    teacher: str | None = None  # hub id or folder of the MLX teacher, evaluated beside them
    tasks: str = ""  # a folder of task folders (or one task folder)
    task: tuple[str, ...] = ()  # names of the task folders to run; empty: all
    mteb: tuple[str, ...] = ()  # mteb hub task names (online only)
    out: str = ""
    split: str = "test"  # evaluation split; classification trains on `train`
    batch_size: int = 64  # teacher batch size
    max_seq_length: int | None = None  # teacher truncation; None: the checkpoint's
    speed_sentences: int = 2000  # sentences timed per model; 0 skips the speed measurement
    speed_task: str = "STSBenchmark"  # the task folder whose sentences are timed

    def __post_init__(self) -> None:
        for name in ("models", "task", "mteb"):  # recipe lists and `--set a,b` both become tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.speed_sentences < 0:
            raise ConfigError(f"speed_sentences={self.speed_sentences} must be >= 0 (0 skips timing)")


TARGETS = ("teacher", "token-mean")


@dataclass(frozen=True)
class FeaturizeConfig:
    """`potstill featurize`: a corpus into resumable shards of teacher embeddings."""

    teacher: str = "sentence-transformers/all-MiniLM-L6-v2"
    corpus: str = "hf:allenai/c4:en"  # a file (.txt/.txt.gz/.jsonl/.parquet) or hf:NAME[:CONFIG]
    out: str = ""
    text_field: str = "text"
    split_sentences: bool = False
    min_words: int = 1
    max_words: int = 10_000
    dedupe: bool = True
    sample_rate: float = 1.0
    seed: int = 0
    max_sentences: int | None = None
    skip_invalid: bool = False
    target: str = "teacher"  # teacher: its own pooling + normalisation; token-mean: tokenlearn's
    prompt: str | None = None  # a prompt name of the teacher (e.g. query) or literal text
    batch_size: int = 64
    max_seq_length: int | None = None
    shard_size: int = 10_000
    num_parts: int = 1
    part: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"target={self.target!r} is not known; use one of {TARGETS}")
        if self.shard_size < 1 or self.batch_size < 1:
            raise ConfigError("shard_size and batch_size must be >= 1")
        if self.num_parts < 1 or not 0 <= self.part < self.num_parts:
            raise ConfigError(f"part={self.part} must be in [0, num_parts={self.num_parts})")
        if self.max_sentences is not None and self.max_sentences < 1:
            raise ConfigError(f"max_sentences={self.max_sentences} must be >= 1")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ConfigError(f"sample_rate={self.sample_rate} must be in (0, 1]")


@dataclass(frozen=True)
class DistillConfig:
    """`potstill distill`: vocabulary, token embeddings, PCA and SIF weights -> a static model."""

    teacher: str = "sentence-transformers/all-MiniLM-L6-v2"
    out: str = ""
    dims: int = 256
    features: str | None = None  # a featurize store: its texts give corpus words and frequencies
    corpus: str | None = None  # or a text corpus file (same readers as featurize)
    max_corpus_sentences: int | None = None
    vocab_size: int = 0  # most frequent corpus words (split by the teacher) to add; 0: none
    min_frequency: int = 2
    vocab: str | None = None  # a user vocabulary file (one token per line) instead of corpus words
    remove_pattern: str = r"\[unused\d+\]"
    pooling: str = "mean"  # isolated tokens: mean (over [CLS] tok [SEP], model2vec's) | cls | teacher
    # auto: context when a corpus is given, else isolated | isolated ([CLS] tok [SEP], model2vec's)
    # | context (each entry's mean teacher output over its occurrences in corpus sentences)
    tokens: str = "auto"
    context_sentences: int = 100_000  # corpus sentences the teacher reads for context vectors
    sif: str = "auto"  # auto: corpus frequencies when a corpus is given, else zipf | zipf | corpus | none
    sif_coefficient: float = 1e-4
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.dims < 1:
            raise ConfigError(f"dims={self.dims} must be >= 1")
        if self.vocab_size < 0:
            raise ConfigError(f"vocab_size={self.vocab_size} must be >= 0")
        if self.sif not in ("auto", "zipf", "corpus", "none"):
            raise ConfigError(f"sif={self.sif!r} is not known; use auto, zipf, corpus or none")
        if self.pooling not in ("mean", "cls", "teacher"):
            raise ConfigError(f"pooling={self.pooling!r} is not known; use mean, cls or teacher")
        if self.tokens not in ("auto", "isolated", "context"):
            raise ConfigError(f"tokens={self.tokens!r} is not known; use auto, isolated or context")
        if self.context_sentences < 1:
            raise ConfigError(f"context_sentences={self.context_sentences} must be >= 1")
        if self.features and self.corpus:
            raise ConfigError("give --features or --corpus, not both")


LOSSES = ("contrastive", "cosine", "mse")


@dataclass(frozen=True)
class TrainConfig:
    """`potstill train`: refine a distilled table against featurized teacher embeddings, then
    (with `born_again`) train a fresh copy of the base on the round-1 model's own embeddings, and
    again on that one's for each further born-again round."""

    base: str = ""  # the distilled model folder (model2vec layout)
    features: str = ""  # the featurized store of the same teacher
    out: str = ""
    loss: str = "contrastive"  # contrastive (in-batch InfoNCE) | cosine | mse
    temperature: float = 0.1  # contrastive only
    batch_size: int = 256
    # batches take runs of this many neighbouring store sentences (mostly one document's): related
    # sentences become hard in-batch negatives; 1 shuffles sentence by sentence
    neighbour_block: int = 1
    epochs: int = 6  # the step budget of a round: epochs over the training split
    patience: int = 2  # early stopping: epochs without a better validation loss; 0: never stop
    lr: float = 3e-3
    weight_decay: float = 0.0
    anchor_decay: float = 0.0  # weight decay toward the round's starting values (L2-SP), not zero
    warmup: float = 0.05  # share of the round's steps spent warming the learning rate up
    val_fraction: float = 0.02  # held-out share of the store (by a hash of the text)
    val_max: int = 5_000  # at most this many held-out sentences (kept in memory)
    max_sentences: int | None = None  # use only the first N sentences of the store
    max_tokens: int = 512  # tokens per sentence, as model2vec truncates
    born_again: bool = False
    alpha: float = 0.5  # born-again targets: alpha * teacher + (1 - alpha) * the previous round's model
    # born-again rounds after round 1, each a fresh copy of the base on the previous round's
    # embeddings: round2/ ... final/ (1: round1/ then final/)
    born_again_rounds: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r} is not known; use one of {LOSSES}")
        if self.neighbour_block < 1:
            raise ConfigError(f"neighbour_block={self.neighbour_block} must be >= 1")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 2 (in-batch negatives)")
        if self.epochs < 1 or self.patience < 0:
            raise ConfigError("epochs must be >= 1 and patience >= 0")
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError("temperature and lr must be > 0")
        if self.weight_decay < 0 or self.anchor_decay < 0:
            raise ConfigError("weight_decay and anchor_decay must be >= 0")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"warmup={self.warmup} must be in [0, 1)")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction={self.val_fraction} must be in (0, 0.5)")
        if self.born_again_rounds < 1:
            raise ConfigError(f"born_again_rounds={self.born_again_rounds} must be >= 1")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha={self.alpha} must be in [0, 1]")
        if self.max_tokens < 1 or self.val_max < 1:
            raise ConfigError("max_tokens and val_max must be >= 1")


EXPORT_DTYPES = ("int8", "float16", "float32")


@dataclass(frozen=True)
class ExportConfig:
    """`potstill export`: a trained model folder into a compact model2vec folder with its card."""

    model: str = ""  # a model2vec folder (potstill train's final/ or any model2vec model)
    out: str = ""
    dtype: str = "int8"  # int8 | float16 | float32
    vocab_quantize: int | None = None  # cluster the rows into K (model2vec's `mapping` layout)
    # int8 only: also write 0_StaticEmbedding/ (the same int8 table with its scale as per-token
    # `weights`, which sentence-transformers folds to float32), so SentenceTransformer(OUT) loads.
    # It doubles the folder; model2vec reads the root files and keeps its fast path either way.
    sentence_transformers: bool = True
    # Sentences for the reload check: a text file (.txt/.txt.gz) or a potstill featurize store
    # folder; None: synthetic sentences from the vocabulary.
    check_texts: str | None = None
    check_sentences: int = 1000
    min_mean_cosine: float = 0.999
    min_cosine: float = 0.99
    push_to_hub: str | None = None  # a hub repo id to upload the folder to
    private: bool = False
    name: str | None = None  # model name in the card; default: the out folder name
    recipe: str | None = None  # the recipe file, quoted in the card

    def __post_init__(self) -> None:
        if self.dtype not in EXPORT_DTYPES:
            raise ConfigError(f"dtype={self.dtype!r} is not known; use one of {EXPORT_DTYPES}")
        if self.vocab_quantize is not None and self.vocab_quantize < 1:
            raise ConfigError(
                f"vocab_quantize={self.vocab_quantize} must be >= 1 (clusters), or unset to keep every row"
            )
        if self.check_sentences < 1:
            raise ConfigError(f"check_sentences={self.check_sentences} must be >= 1")
        for key in ("min_mean_cosine", "min_cosine"):
            if not -1.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key}={getattr(self, key)} must be a cosine in [-1, 1]")
        if self.private and not self.push_to_hub:
            raise ConfigError("private=true needs an upload: add --push-to-hub REPO or drop --private")
        repo = self.push_to_hub
        if repo is not None and (not repo.strip("/") or repo.count("/") > 1):
            raise ConfigError(f"push_to_hub={self.push_to_hub!r} should be a hub repo id: OWNER/NAME or NAME")


@dataclass(frozen=True)
class QuantizeConfig:
    """`potstill quantize`: a quantized teacher checkpoint, its fidelity screen, or its layer map."""

    teacher: str = "sentence-transformers/all-MiniLM-L6-v2"  # a float checkpoint (hub id or folder)
    out: str = ""  # the checkpoint folder; with --layer-map, the map's folder
    scheme: str = "uniform"  # uniform | crush_middle | protect_late | 3tier (ends: first/last quarter)
    bits: int | None = None  # the crushed layers' bits (default 4; mxfp8: 8)
    group_size: int | None = None  # 32 | 64 | 128 (default 64; mx modes: 32)
    mode: str = "affine"  # affine | mxfp4 | mxfp8
    layers: tuple[Any, ...] = ()  # a table: [{range = "0-1", bits = 8}, ...] or "0-1:8,2-3:4"; 16 = float16
    embeddings_bits: int | None = None  # None: embeddings stay float16
    screen: bool = False  # compare the quantized teacher with the float one
    layer_map: bool = False  # quantize one block at a time; propose a scheme under target_bits
    corpus: str = ""  # sentences for the screen and the layer map
    sentences: int = 2000
    retrieval: str | None = None  # a BEIR task folder: NDCG@10 of both teachers
    retrieval_docs: int | None = None  # corpus subset: relevant documents + N others; None: all
    max_seq_length: int | None = None  # teacher truncation (both teachers); None: the checkpoint's
    batch_size: int = 64
    block_size: int = 1  # layer map: layers quantized together per probe
    target_bits: float = 6.5  # layer map: bits per weight (Linear weights) the proposal may use
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.screen and self.layer_map:
            raise ConfigError("give --screen or --layer-map, not both")
        if (self.screen or self.layer_map) and not self.corpus:
            raise ConfigError("the screen and the layer map need --corpus FILE (sentences to embed)")
        if self.sentences < 11:
            raise ConfigError(f"sentences={self.sentences} must be >= 11 (top-10 neighbours)")
        if self.batch_size < 1 or self.block_size < 1:
            raise ConfigError("batch_size and block_size must be >= 1")
        if self.retrieval_docs is not None and self.retrieval_docs < 0:
            raise ConfigError(f"retrieval_docs={self.retrieval_docs} must be >= 0 (unset: the whole corpus)")


@dataclass(frozen=True)
class RunConfig:
    """`potstill run RECIPE`: the recipe's `[run]` table; the stages have their own tables."""

    name: str = ""  # the run's folder name under workdir; default: the recipe file's stem
    teacher: str = "sentence-transformers/all-MiniLM-L6-v2"  # hub id or folder, for every stage
    corpus: str = "hf:allenai/c4:en"  # featurize's corpus: a file or hf:NAME[:CONFIG]
    workdir: str = "runs"  # run folders, plus the shared teachers/ and features/ stores

    def __post_init__(self) -> None:
        if self.name and ("/" in self.name or self.name in (".", "..")):
            raise ConfigError(f"name={self.name!r} must be a plain folder name")
        if not self.teacher or not self.corpus:
            raise ConfigError("[run] needs a teacher and a corpus (or --teacher / --corpus)")
