"""The evaluation section of a potstill model card: `potstill eval` fills it in each evaluated
model folder whose README.md has the section's markers (potstill export writes them)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from potstill.eval.report import summary_table
from potstill.eval.scores import BESIDE_DEV, EvalRun

logger = logging.getLogger(__name__)

README = "README.md"
EVAL_BEGIN = "<!-- potstill eval: begin -->"
EVAL_END = "<!-- potstill eval: end -->"


def eval_section(run: EvalRun, model_dir: Path) -> list[str]:
    """The summary table of an eval run, the model in `model_dir` first."""
    here = os.path.realpath(model_dir)
    models = sorted(run.models, key=lambda m: os.path.realpath(m.source) != here)  # stable sort
    ordered = EvalRun(run.split, run.tasks, models, run.speed_task, run.versions, run.seconds)
    return [
        "## Evaluation",
        "",
        *summary_table(ordered),
        "",
        f"Scores x100 on the `{run.split}` splits, measured by `potstill eval` with mteb "
        f"{run.versions.get('mteb', '?')}. The dev score is the mean of the STS, Classification and "
        f"PairClassification category means; {BESIDE_DEV} NDCG@10 is reported beside it. Speeds are "
        "sentences per second in that one run: compare them within this table only.",
        "",
    ]


def fill_card(model_dir: Path, run: EvalRun) -> bool:
    """Put the run's table between the markers of `model_dir/README.md`; False when the folder
    has no card with markers (a model potstill did not export: left untouched)."""
    path = model_dir / README
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    begin, end = text.find(EVAL_BEGIN), text.find(EVAL_END)
    if begin < 0 or end < begin:
        return False
    body = "\n".join([EVAL_BEGIN, *eval_section(run, model_dir), EVAL_END])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text[:begin] + body + text[end + len(EVAL_END) :], encoding="utf-8")
    os.replace(tmp, path)
    logger.info("filled the evaluation section of %s", path)
    return True


def fill_cards(run: EvalRun) -> list[Path]:
    """Fill the card of every evaluated static model that has one; the folders filled."""
    folders = [Path(m.source) for m in run.models if m.kind == "static"]
    return [f for f in folders if fill_card(f, run)]
