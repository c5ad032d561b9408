"""`potstill run RECIPE`: walks the stage registry, skipping what is done.

A recipe is a TOML file with a `[run]` table (name, teacher, corpus, workdir) and one table per
stage holding that stage's config (the same keys as the stage's command). Each stage declares,
in its package's `stage.py` (`potstill.contract.Stage`), the fields the pipeline supplies and
how (`wire`): the paths that join the stages, so a recipe never names them. With the registry
below the folders are:

    WORKDIR/teachers/NAME/    quantize (only when the recipe has a [quantize] table)
    WORKDIR/features/NAME/    featurize, shared by recipes with the same teacher and corpus
    WORKDIR/RUN/base/         distill
    WORKDIR/RUN/trained/      train: round1/ [round2/ ...] final/
    WORKDIR/RUN/RUN-DTYPE/    export: the model users load (model card README.md)
    WORKDIR/RUN/eval/         eval (only with an [eval] table): results.json, report.md, plots
    WORKDIR/RUN/run.json      per stage: ran or skipped, seconds; what each stage reports

A stage is skipped when its output's manifest records the same stage, the same config, the same
input manifests, and its files still match their checksums: an interrupted run resumes, and a
changed setting reruns that stage and the ones after it. Featurize and train also resume inside a
stage (complete shards, finished rounds and epoch checkpoints are kept).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from potstill import distributed, manifest
from potstill.config import DEFAULT_TEACHER, ConfigError, build, load_recipe, parse_sets, setting, to_dict
from potstill.contract import Context, Stage, Step
from potstill.distill.stage import STAGE as DISTILL
from potstill.eval.stage import STAGE as EVAL
from potstill.export.stage import STAGE as EXPORT
from potstill.features.stage import STAGE as FEATURIZE
from potstill.quantize.stage import STAGE as QUANTIZE
from potstill.train.stage import STAGE as TRAIN

logger = logging.getLogger(__name__)

REGISTRY: tuple[Stage, ...] = (QUANTIZE, FEATURIZE, DISTILL, TRAIN, EXPORT, EVAL)
STAGES = tuple(s.name for s in REGISTRY)
SUMMARY = "run.json"


@dataclass(frozen=True)
class RunConfig:
    """`potstill run RECIPE`: the recipe's `[run]` table; the stages have their own tables."""

    name: str = setting("", "the run's folder name under workdir (default: the recipe file's stem)")
    teacher: str = setting(DEFAULT_TEACHER, "hub id or folder of the teacher, for every stage")
    corpus: str = setting("hf:allenai/c4:en", "featurize's corpus: a file or hf:NAME[:CONFIG]")
    workdir: str = setting("runs", "run folders, plus the shared teachers/ and features/ stores")

    def __post_init__(self) -> None:
        if self.name and ("/" in self.name or self.name in (".", "..")):
            raise ConfigError(f"name={self.name!r} must be a plain folder name")
        if not self.teacher or not self.corpus:
            raise ConfigError("[run] needs a teacher and a corpus (or --teacher / --corpus)")


@dataclass(frozen=True)
class Plan:
    """A recipe resolved into its steps."""

    recipe: Path
    run: RunConfig
    folder: Path
    steps: tuple[Step, ...]

    def step(self, stage: str) -> Step | None:
        return next((s for s in self.steps if s.stage == stage), None)


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


def _plan_step(spec: Stage, table: dict[str, Any], sets: dict[str, str], ctx: Context) -> Step:
    """The stage's config: the recipe's table and overrides, then the values the pipeline supplies."""
    for key in spec.supplied:
        if key in table or key in sets:
            raise ConfigError(
                f"recipe {ctx.recipe}: [{spec.name}] {key} is set by potstill run (paths join the stages; "
                "the teacher and corpus come from [run], --teacher and --corpus)"
            )
    asked = build(spec.config, table, sets)
    cfg = build(spec.config, table, sets, spec.wire(asked, ctx))
    return Step(spec.name, cfg, Path(cfg.out))


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
    ctx = Context(path, run.name or path.stem, run.teacher, run.corpus, Path(run.workdir), {})
    for spec in REGISTRY:
        if spec.optional and spec.name not in recipe:
            continue
        step = _plan_step(spec, _table(recipe, spec.name, path), overrides.get(spec.name, {}), ctx)
        ctx.steps[spec.name] = step
        if spec.provides == "teacher":  # a quantized teacher replaces the float one downstream
            ctx = dataclasses.replace(ctx, teacher=str(step.out))
    return Plan(path, run, ctx.folder, tuple(ctx.steps.values()))


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


def _spec(stage: str) -> Stage:
    return next(s for s in REGISTRY if s.name == stage)


def check_inputs(p: Plan, until: int | None = None) -> None:
    """Fail before any stage runs when a file the run will need (up to stage `until`) is missing."""
    for step in p.steps[: None if until is None else until + 1]:
        spec = _spec(step.stage)
        if spec.check is not None:
            spec.check(step.config)


def _previous(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def execute(
    p: Plan, *, start: str | None = None, until: str | None = None, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the plan's stages in order, skipping complete ones; returns the run summary.

    Under `mlx.launch` featurize and train run on every rank (each its share), the other stages
    on rank 0 while the rest wait; rank 0 writes run.json. The ranks must see the same folders
    (one machine, or a shared workdir): they check that they agree on what is done."""
    world = distributed.world()
    if not world.leader:
        say = logger.debug
    names = [s.stage for s in p.steps]
    for flag, stage in (("--from", start), ("--until", until)):
        if stage is not None and stage not in names:
            raise ConfigError(f"{flag} {stage}: this recipe's stages are {', '.join(names)}")
    first_forced = names.index(start) if start else len(names)
    last = names.index(until) if until else len(names) - 1
    check_inputs(p, last)
    previous = _previous(p.folder).get("stages", {})
    stages: dict[str, Any] = {}
    p.folder.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    for i, step in enumerate(p.steps[: last + 1]):
        reason = "--from" if i >= first_forced else stage_done(step)
        world.agree(reason is None, f"view of {step.out} (done or not)")
        head = f"==> [{i + 1}/{len(p.steps)}] {step.stage}: {step.out}"
        if reason is None:
            say(f"{head} (done, skipped)")
            old = previous.get(step.stage, {})
            stages[step.stage] = {"status": "skipped", "seconds": old.get("seconds"), "out": str(step.out)}
            continue
        say(f"{head} ({reason})")
        began = time.perf_counter()
        spec = _spec(step.stage)
        if world.leader or spec.every_rank:
            spec.run(step.config)
        world.barrier()  # rank 0's stages: the others wait here for its output
        seconds = time.perf_counter() - began
        stages[step.stage] = {"status": "ran", "seconds": round(seconds, 3), "out": str(step.out)}
        if world.leader:
            _write_summary(p, stages, time.perf_counter() - total)
    if not world.leader:
        return {"stages": stages}
    summary = _write_summary(p, stages, time.perf_counter() - total)
    say(summary_text(summary))
    return summary


def _write_summary(p: Plan, stages: dict[str, Any], seconds: float) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "recipe": str(p.recipe),
        "name": p.folder.name,
        "run": to_dict(p.run),
        "stages": stages,
        "seconds_this_run": round(seconds, 1),
        "seconds_all_stages": round(sum(s.get("seconds") or 0.0 for s in stages.values()), 1),
        "model": {},
        "scores": {},
    }
    for step in p.steps:  # each stage's own part: export's model, eval's scores
        summarize = _spec(step.stage).summarize
        if summarize is not None:
            summary.update(summarize(step.out))
    summary["configs"] = {s.stage: to_dict(s.config) for s in p.steps}
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
