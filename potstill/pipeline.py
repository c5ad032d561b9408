"""`potstill run RECIPE`: quantize -> featurize -> distill -> train -> export -> eval.

A recipe is a TOML file with a `[run]` table (name, teacher, corpus, workdir) and one table per
stage holding that stage's config (the same keys as the stage's command). The pipeline owns the
paths that join the stages, so a recipe never names them:

    WORKDIR/teachers/NAME/    the quantized teacher (only when the recipe has a [quantize] table)
    WORKDIR/features/NAME/    the featurized store, named by teacher, corpus, size and a hash of
                              its settings, so recipes with the same teacher and corpus share it
    WORKDIR/RUN/base/         distill
    WORKDIR/RUN/trained/      train: round1/ [round2/ ...] final/
    WORKDIR/RUN/RUN-DTYPE/    export: the model users load (model card README.md)
    WORKDIR/RUN/eval/         eval: results.json, report.md, plots
    WORKDIR/RUN/run.json      per stage: ran or skipped, seconds; sizes and scores

A stage is skipped when its output's manifest records the same stage, the same config hash, the
same input manifests, and its files still match their checksums: an interrupted run resumes, and a
changed setting reruns that stage and the ones after it. Featurize and train also resume inside a
stage (complete shards, finished rounds and epoch checkpoints are kept).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from potstill import manifest
from potstill.config import (
    ConfigError,
    DistillConfig,
    EvalConfig,
    ExportConfig,
    FeaturizeConfig,
    QuantizeConfig,
    RunConfig,
    TrainConfig,
    build,
    load_recipe,
    parse_sets,
    to_dict,
)

logger = logging.getLogger(__name__)

STAGES = ("quantize", "featurize", "distill", "train", "export", "eval")
SUMMARY = "run.json"
HF_PREFIX = "hf:"
# store settings that do not change its content: left out of the store's name
_NOT_CONTENT = ("out", "batch_size", "num_parts", "part")
# config keys each stage gets from the pipeline; a recipe table that sets them is an error
_OWNED: dict[str, tuple[str, ...]] = {
    "quantize": ("teacher", "out", "screen", "layer_map"),
    "featurize": ("teacher", "corpus", "out", "num_parts", "part"),
    "distill": ("teacher", "features", "corpus", "out"),
    "train": ("base", "features", "out"),
    "export": ("model", "out", "check_texts", "recipe"),
    "eval": ("out",),
}
_CONFIGS: dict[str, type[Any]] = {
    "quantize": QuantizeConfig,
    "featurize": FeaturizeConfig,
    "distill": DistillConfig,
    "train": TrainConfig,
    "export": ExportConfig,
    "eval": EvalConfig,
}


@dataclass(frozen=True)
class Step:
    """One stage of a planned run: its resolved config and the folder it writes."""

    stage: str
    config: Any
    out: Path


@dataclass(frozen=True)
class Plan:
    """A recipe resolved into its steps."""

    recipe: Path
    run: RunConfig
    folder: Path
    steps: tuple[Step, ...]

    def step(self, stage: str) -> Step | None:
        return next((s for s in self.steps if s.stage == stage), None)


def slug(text: str) -> str:
    """A file-name-safe form of `text`."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.") or "x"


def features_name(cfg: FeaturizeConfig) -> str:
    """The store's folder name: teacher, corpus, size and a hash of the content settings."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_CONTENT}
    is_hf = cfg.corpus.startswith(HF_PREFIX)
    settings["corpus"] = cfg.corpus if is_hf else Path(cfg.corpus).name
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    corpus = cfg.corpus[len(HF_PREFIX) :] if is_hf else Path(cfg.corpus).name.split(".")[0]
    size = cfg.max_sentences if cfg.max_sentences is not None else "all"
    return f"{slug(cfg.teacher.rstrip('/').split('/')[-1])}-{slug(corpus)}-{size}-{digest}"


def teacher_name(cfg: QuantizeConfig) -> str:
    """The quantized teacher's folder name: teacher, scheme and a hash of the settings."""
    settings = {k: v for k, v in to_dict(cfg).items() if k != "out"}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{slug(cfg.teacher.rstrip('/').split('/')[-1])}-{slug(cfg.scheme)}-{digest}"


def _split_sets(sets: list[str] | None) -> dict[str, dict[str, str]]:
    """`--set stage.key=value` into per-stage overrides."""
    out: dict[str, dict[str, str]] = {}
    for key, value in parse_sets(sets).items():
        section, _, name = key.partition(".")
        if not name or section not in ("run", *STAGES):
            raise ConfigError(
                f"--set {key}={value}: name the stage, e.g. --set train.epochs=3 (stages: run, {', '.join(STAGES)})"
            )
        out.setdefault(section, {})[name] = value
    return out


def _table(recipe: dict[str, Any], section: str, path: Path) -> dict[str, Any]:
    table = recipe.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"recipe {path}: [{section}] should be a table")
    return table


def _stage_config(
    stage: str, table: dict[str, Any], sets: dict[str, str], owned: dict[str, Any], path: Path
) -> Any:
    for key in _OWNED[stage]:
        if key in table or key in sets:
            raise ConfigError(
                f"recipe {path}: [{stage}] {key} is set by potstill run (paths join the stages; "
                "the teacher and corpus come from [run], --teacher and --corpus)"
            )
    return build(_CONFIGS[stage], table, sets, owned)


def plan(
    recipe_path: str | Path,
    *,
    corpus: str | None = None,
    teacher: str | None = None,
    sets: list[str] | None = None,
) -> Plan:
    """Resolve a recipe (plus overrides) into the stages to run and their folders."""
    path = Path(recipe_path)
    recipe = load_recipe(path)
    unknown = set(recipe) - {"run", *STAGES}
    if unknown:
        raise ConfigError(
            f"recipe {path}: unknown table(s) {sorted(unknown)}; known: run, {', '.join(STAGES)}"
        )
    overrides = _split_sets(sets)
    flags = {k: v for k, v in (("corpus", corpus), ("teacher", teacher)) if v is not None}
    run = build(RunConfig, _table(recipe, "run", path), overrides.get("run", {}), flags)
    name = run.name or path.stem
    workdir = Path(run.workdir)
    folder = workdir / name
    steps: list[Step] = []

    def add(stage: str, owned: dict[str, Any], out: Path | None = None) -> Any:
        table = _table(recipe, stage, path)
        cfg = _stage_config(stage, table, overrides.get(stage, {}), owned, path)
        if out is None:
            out = Path(owned["out"])
            cfg = dataclasses.replace(cfg, out=str(out))
        steps.append(Step(stage, cfg, out))
        return cfg

    teacher_id = run.teacher
    if "quantize" in recipe:
        probe = _stage_config(
            "quantize", _table(recipe, "quantize", path), overrides.get("quantize", {}), {}, path
        )
        q_out = workdir / "teachers" / teacher_name(dataclasses.replace(probe, teacher=run.teacher))
        add("quantize", {"teacher": run.teacher, "out": str(q_out)})
        teacher_id = str(q_out)
    feat = _stage_config(
        "featurize",
        _table(recipe, "featurize", path),
        overrides.get("featurize", {}),
        {"teacher": teacher_id, "corpus": run.corpus},
        path,
    )
    features = workdir / "features" / features_name(feat)
    add("featurize", {"teacher": teacher_id, "corpus": run.corpus, "out": str(features)})
    base = folder / "base"
    add("distill", {"teacher": teacher_id, "features": str(features), "out": str(base)})
    trained = folder / "trained"
    train_cfg = add("train", {"base": str(base), "features": str(features), "out": str(trained)})
    model_in = trained / ("final" if train_cfg.born_again else "round1")
    export_probe = _stage_config(
        "export", _table(recipe, "export", path), overrides.get("export", {}), {}, path
    )
    model = folder / f"{name}-{export_probe.dtype}"
    add(
        "export",
        {
            "model": str(model_in),
            "out": str(model),
            "check_texts": str(features),
            "recipe": str(path),
            "name": export_probe.name or name,
        },
    )
    if "eval" in recipe:
        eval_table = _table(recipe, "eval", path)
        eval_sets = overrides.get("eval", {})
        probe_eval = build(EvalConfig, eval_table, eval_sets)
        models = (str(model), *(m for m in probe_eval.models if m != str(model)))
        add("eval", {"models": models, "out": str(folder / "eval")})
    return Plan(path, run, folder, tuple(steps))


def stage_done(step: Step) -> str | None:
    """Why `step` must run, or None when its output is complete and current."""
    try:
        info = manifest.read(step.out)
    except manifest.ManifestError:
        return "no output yet"
    if info.get("stage") != step.stage:
        return f"{step.out} holds a {info.get('stage')} output"
    if info.get("config") != to_dict(step.config):  # train's config_sha256 is its round hash
        return "settings changed"
    for recorded in info.get("inputs", []):
        if recorded.get("manifest_sha256") is None:
            continue
        current = manifest.Input.of(recorded["path"]).manifest_sha256
        if current != recorded["manifest_sha256"]:
            return f"input {recorded['path']} changed"
    problems = manifest.verify(step.out)
    return f"files changed: {problems[0]}" if problems else None


def check_inputs(p: Plan) -> None:
    """Fail before any stage runs when a file the run will need is missing."""
    feat = p.step("featurize")
    if feat is not None:
        corpus = feat.config.corpus
        if not corpus.startswith(HF_PREFIX) and not Path(corpus).is_file():
            raise ConfigError(
                f"corpus {corpus} does not exist; pass --corpus FILE (or hf:NAME for a hub dataset)"
            )
    ev = p.step("eval")
    if ev is not None:
        if not ev.config.tasks and not ev.config.mteb:
            raise ConfigError("[eval] needs tasks = DIR (task folders) or mteb = [...] (hub tasks)")
        if ev.config.tasks and not Path(ev.config.tasks).is_dir():
            raise ConfigError(f"[eval] tasks {ev.config.tasks} is not a folder; --set eval.tasks=DIR")
        for m in ev.config.models[1:]:
            if not Path(m).is_dir():
                raise ConfigError(f"[eval] models: {m} is not a folder; --set eval.models=DIR,...")


def _runner(stage: str) -> Callable[[Any], Any]:
    """The function that runs a stage (imported when used: some need the eval extra)."""
    if stage == "quantize":
        from potstill.commands.quantize import quantize_teacher

        return quantize_teacher
    if stage == "featurize":
        from potstill.distill.featurize import featurize

        return featurize
    if stage == "distill":
        from potstill.distill.build import distill

        return distill
    if stage == "train":
        from potstill.train.stage import train

        return train
    if stage == "export":
        from potstill.export import export

        return export
    from potstill.commands.eval import evaluate_to_folder

    return evaluate_to_folder


def _previous(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def execute(
    p: Plan, *, start: str | None = None, until: str | None = None, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the plan's stages in order, skipping complete ones; returns the run summary."""
    names = [s.stage for s in p.steps]
    for flag, stage in (("--from", start), ("--until", until)):
        if stage is not None and stage not in names:
            raise ConfigError(f"{flag} {stage}: this recipe's stages are {', '.join(names)}")
    check_inputs(p)
    first_forced = names.index(start) if start else len(names)
    last = names.index(until) if until else len(names) - 1
    previous = _previous(p.folder).get("stages", {})
    stages: dict[str, Any] = {}
    p.folder.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    for i, step in enumerate(p.steps[: last + 1]):
        reason = "--from" if i >= first_forced else stage_done(step)
        head = f"==> [{i + 1}/{len(p.steps)}] {step.stage}: {step.out}"
        if reason is None:
            say(f"{head} (done, skipped)")
            old = previous.get(step.stage, {})
            stages[step.stage] = {"status": "skipped", "seconds": old.get("seconds"), "out": str(step.out)}
            continue
        say(f"{head} ({reason})")
        began = time.perf_counter()
        result = _runner(step.stage)(step.config)
        if step.stage == "quantize":
            say("\n".join(result))
        seconds = time.perf_counter() - began
        stages[step.stage] = {"status": "ran", "seconds": round(seconds, 3), "out": str(step.out)}
        _write_summary(p, stages, time.perf_counter() - total)
    summary = _write_summary(p, stages, time.perf_counter() - total)
    _write_card(p)
    say(summary_text(summary))
    return summary


def _write_card(p: Plan) -> None:
    exp = p.step("export")
    if exp is None or not (exp.out / manifest.MANIFEST).is_file():
        return
    from potstill.card import write_card

    ev = p.step("eval")
    results = ev.out / "results.json" if ev is not None else None
    write_card(
        exp.out,
        name=exp.config.name,
        recipe=str(p.recipe),
        results=results if results is not None and results.is_file() else None,
    )


def _scores(p: Plan) -> dict[str, Any]:
    ev = p.step("eval")
    path = ev.out / "results.json" if ev is not None else None
    if path is None or not path.is_file():
        return {}
    from potstill.eval.scores import BESIDE_DEV

    data = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for label, m in data.get("models", {}).items():
        dev = m.get("dev", {})
        speed = m.get("speed") or {}
        out[label] = {
            "dev_score": dev.get("dev_score"),
            "scifact": dev.get(BESIDE_DEV),
            "sentences_per_second": speed.get("sentences_per_second"),
            "size_bytes": m.get("size_bytes"),
            "dim": m.get("dim"),
        }
    return out


def _write_summary(p: Plan, stages: dict[str, Any], seconds: float) -> dict[str, Any]:
    model: dict[str, Any] = {}
    exp = p.step("export")
    if exp is not None and (exp.out / manifest.MANIFEST).is_file():
        info = manifest.read(exp.out)
        model = {
            "path": str(exp.out),
            **{k: info.get(k) for k in ("rows", "dims", "dtype", "bytes", "check")},
        }
    summary = {
        "recipe": str(p.recipe),
        "name": p.folder.name,
        "run": to_dict(p.run),
        "stages": stages,
        "seconds_this_run": round(seconds, 1),
        "seconds_all_stages": round(sum(s.get("seconds") or 0.0 for s in stages.values()), 1),
        "model": model,
        "scores": _scores(p),
        "configs": {s.stage: to_dict(s.config) for s in p.steps},
    }
    tmp = p.folder / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(p.folder / SUMMARY)
    return summary


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def summary_text(summary: dict[str, Any]) -> str:
    """The end-of-run summary: stage times, the model, and the scores."""
    lines = [f"run {summary['name']} ({summary['recipe']})"]
    for stage, info in summary["stages"].items():
        secs = info.get("seconds")
        time_text = f"{secs:8.1f} s" if secs is not None else "        -"
        lines.append(f"  {stage:<10} {info['status']:<8} {time_text}  {info['out']}")
    lines.append(
        f"  all stages {summary['seconds_all_stages']:.1f} s; this run {summary['seconds_this_run']:.1f} s"
    )
    m = summary.get("model") or {}
    if m:
        mb = (m.get("bytes") or 0) / 1e6
        lines.append(f"model {m['path']}: {m.get('rows')} x {m.get('dims')} {m.get('dtype')}, {mb:.1f} MB")
    for label, s in summary.get("scores", {}).items():
        speed = s.get("sentences_per_second")
        speed_text = f", {speed:,.0f} sentences/s" if speed else ""
        lines.append(
            f"  {label}: dev score {_pct(s.get('dev_score'))}, SciFact {_pct(s.get('scifact'))}{speed_text}"
        )
    return "\n".join(lines)


def dry_run_text(p: Plan) -> str:
    """What a run would do: each stage, its folder, done or why it runs, and its config."""
    lines = [f"recipe {p.recipe}: run folder {p.folder}"]
    for i, step in enumerate(p.steps):
        reason = stage_done(step)
        state = "done, would be skipped" if reason is None else f"would run: {reason}"
        lines.append(f"[{i + 1}/{len(p.steps)}] {step.stage} -> {step.out} ({state})")
        lines.append(json.dumps(to_dict(step.config), indent=2))
    return "\n".join(lines)
