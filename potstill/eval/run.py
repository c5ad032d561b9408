"""One evaluation run: every model on every task through `mteb.evaluate`, plus speed and size.

Reads top to bottom: `check_inputs` reads every task folder and checks the model paths (no mteb
needed, so a bad folder fails in a second); `evaluate` loads the models, draws the speed sample,
then per model times it and runs each task. mteb's result cache is off, so every number comes
from this run. mteb itself is imported only once the inputs are known to be sound.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from potstill.config import ConfigError
from potstill.eval import mteb_tasks
from potstill.eval.config import EvalConfig
from potstill.eval.scores import EXTRA_METRICS, EvalRun, ModelScores, TaskScore, split_score
from potstill.eval.speed import Speed, measure, sample_sentences
from potstill.eval.tasks import TaskData, TaskFolderError, TaskSpec, find_tasks, load_task

if TYPE_CHECKING:
    from mteb.types import EncodeKwargs

    from potstill.eval.models import Encoder

logger = logging.getLogger(__name__)


@dataclass
class Inputs:
    """The checked task folders of a run, and the sentences every model is timed on."""

    folders: list[TaskData]
    speed_task: str | None
    speed_sample: list[str]


def check_inputs(cfg: EvalConfig) -> Inputs:
    """Read and check every selected task folder and the model paths; draw the speed sample."""
    if cfg.task and not cfg.tasks:
        raise ConfigError("--task selects task folders: pass --tasks DIR too")
    if not cfg.tasks and not cfg.mteb:
        raise ConfigError("eval needs --tasks DIR (a folder of task folders) or --mteb NAME,...")
    if not cfg.models and not cfg.teacher:
        raise ConfigError("eval needs at least one MODEL folder or --teacher ID_OR_PATH")
    for path in cfg.models:
        if not Path(path).expanduser().is_dir():
            raise ConfigError(
                f"MODEL {path} is not a folder; pass model2vec folders (config.json, model.safetensors, tokenizer.json)"
            )
    folders = [load_task(spec, cfg.split) for spec in (find_tasks(cfg.tasks, cfg.task) if cfg.tasks else [])]
    speed_task, sample = _speed_sample(cfg, folders)
    return Inputs(folders, speed_task, sample)


def _speed_sample(cfg: EvalConfig, folders: list[TaskData]) -> tuple[str | None, list[str]]:
    """The sentences every model is timed on, and the task split they come from."""
    if cfg.speed_sentences == 0:
        return None, []
    names = (cfg.speed_task,)
    source = next(
        (d for d in folders if d.spec.name in names or getattr(d.spec.folder, "name", "") in names), None
    )
    if source is None and cfg.tasks:
        try:  # not evaluated in this run, but timing on the usual sentences keeps runs comparable
            source = load_task(find_tasks(cfg.tasks, names)[0], cfg.split)
        except TaskFolderError:
            source = folders[0] if folders else None
            if source is not None:
                logger.warning(
                    "no task %s to time on; timing on %s instead", cfg.speed_task, source.spec.name
                )
    if source is None:
        logger.warning("no task folder to draw speed sentences from: speed not measured")
        return None, []
    return f"{source.spec.name} {source.split}", sample_sentences(source, cfg.speed_sentences)


def load_models(cfg: EvalConfig) -> list[Encoder]:
    """The static models (in the order given), then the teacher."""
    # lazy: potstill.eval.models subclasses mteb's encoder (the optional eval extra)
    from potstill.eval.models import StaticEncoder, TeacherEncoder, unique_labels

    encoders: list[Encoder] = []
    for path, label in zip(cfg.models, unique_labels(cfg.models), strict=True):
        encoders.append(StaticEncoder.load(path, label))
    if cfg.teacher:
        encoders.append(TeacherEncoder.load(cfg.teacher, cfg.batch_size, cfg.max_seq_length))
    return encoders


def evaluate_task(encoder: Encoder, spec: TaskSpec, task: Any, split: str) -> TaskScore:
    """Run mteb's evaluator of `task` on `encoder`; pick the main score (and extras) of `split`."""
    import mteb  # lazy: the optional eval extra

    # mteb hands the model all texts of a split through a data loader; big batches only make
    # gathering them cheaper (our encoders batch on their own).
    encode_kwargs: EncodeKwargs = {"batch_size": 1024, "show_progress_bar": False}
    start = time.perf_counter()
    try:
        result = mteb.evaluate(
            encoder,
            task,
            cache=None,
            overwrite_strategy="always",
            encode_kwargs=encode_kwargs,
            show_progress_bar=False,
            co2_tracker=False,
        )
    except Exception as e:
        if spec.folder is None:  # a hub task: the usual cause is no network
            raise TaskFolderError(
                f"--mteb {spec.name}: mteb could not run it ({e}); hub tasks need network access"
            ) from e
        raise
    seconds = time.perf_counter() - start
    if result.exceptions or not result.task_results:
        raise TaskFolderError(f"mteb failed on {spec.name}: {result.exceptions}")
    data = result.task_results[0].model_dump(mode="json")  # dates as strings: ready for results.json
    value = split_score(data, split, spec.main_score, spec.name)
    extras = {m: split_score(data, split, m, spec.name) for m in EXTRA_METRICS.get(spec.type, ())}
    logger.info("%s: %s %s = %.2f (%.1f s)", encoder.label, spec.name, spec.main_score, 100 * value, seconds)
    return TaskScore(spec.name, spec.type.value, spec.main_score, value, extras, seconds, data)


def evaluate(cfg: EvalConfig, inputs: Inputs | None = None) -> EvalRun:
    """Evaluate the configured models on the configured tasks (`inputs` from `check_inputs`)."""
    start = time.perf_counter()
    inputs = inputs or check_inputs(cfg)
    hub = [mteb_tasks.hub_task(name, cfg.split)[0] for name in cfg.mteb]
    mteb_tasks.quiet_mteb()
    models = []
    encoders = load_models(cfg)
    speeds: list[Speed | None] = [None] * len(encoders)
    if inputs.speed_sample:  # all models in turns, before any task: the same conditions for each
        speeds = list(measure([e.encode_texts for e in encoders], inputs.speed_sample))
    for encoder, speed in zip(encoders, speeds, strict=True):
        scores = ModelScores(encoder.label, encoder.kind, encoder.source, encoder.dim, encoder.size_bytes)
        if speed is not None:
            scores.speed = speed
            logger.info("%s: %.0f sentences/s on %s", encoder.label, speed.per_second, inputs.speed_task)
        for data in inputs.folders:
            scores.tasks[data.spec.name] = evaluate_task(
                encoder, data.spec, mteb_tasks.to_mteb(data), cfg.split
            )
        for spec in hub:  # a fresh task per model: mteb loads its data from the hub and unloads it
            task = mteb_tasks.hub_task(spec.name, cfg.split)[1]
            scores.tasks[spec.name] = evaluate_task(encoder, spec, task, cfg.split)
        models.append(scores)
    specs = [d.spec for d in inputs.folders] + hub
    versions = {pkg: md.version(pkg) for pkg in ("mteb", "model2vec")}
    return EvalRun(cfg.split, specs, models, inputs.speed_task, versions, time.perf_counter() - start)
