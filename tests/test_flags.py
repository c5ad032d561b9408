"""Every command's flags come from its stage config, once each, and keep the names users type."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from potstill.cli import COMMANDS, build_parser
from potstill.commands import common
from potstill.config import fields

STAGE_COMMANDS = ["encode", "featurize", "distill", "train", "export", "quantize", "eval"]
SHARED = ["--out", "--recipe", "--set", "--dry-run"]

# The flags each command had before the redesign (potstill/commands/*.py at e96ac73), which
# scripts and docs type: each must still parse.
OLD_FLAGS = {
    "encode": "--teacher --input --batch-size --prompt --max-seq-length --skip-invalid",
    "featurize": "--teacher --corpus --batch-size --max-sentences --max-seq-length --max-words --min-words "
    "--no-dedupe --num-parts --part --prompt --sample-rate --seed --shard-size --skip-invalid "
    "--split-sentences --target --text-field",
    "distill": "--teacher --dims --features --corpus --max-corpus-sentences --vocab-size --min-frequency "
    "--vocab --pooling --tokens --context-sentences --sif --sif-coefficient --batch-size",
    "train": "--base --features --loss --temperature --batch-size --neighbour-block --epochs --patience "
    "--lr --weight-decay --anchor-decay --val-fraction --max-sentences --born-again --alpha "
    "--born-again-rounds --seed",
    "export": "--dtype --check-sentences --check-texts --min-cosine --min-mean-cosine --name "
    "--no-sentence-transformers --private --vocab-quantize --push-to-hub",
    "quantize": "--scheme --bits --group-size --mode --layers --embeddings-bits --screen --layer-map "
    "--corpus --sentences --retrieval --retrieval-docs --max-seq-length --batch-size --block-size "
    "--target-bits --seed --teacher",
    "eval": "--teacher --tasks --task --mteb --split --batch-size --max-seq-length --speed-sentences",
}


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def config_of(command: str) -> type:
    return COMMANDS[command][0].CONFIG  # type: ignore[attr-defined, no-any-return]


def help_flags(command: str) -> list[str]:
    """The option strings `potstill COMMAND --help` prints in its options list, in order."""
    text = subparser(command).format_help().split("options:", 1)[1]
    return re.findall(r"^\s{2}(--[a-z0-9-]+)", text, flags=re.M) + re.findall(r", (--[a-z0-9-]+)", text)


@pytest.mark.parametrize("command", STAGE_COMMANDS)
def test_help_names_each_config_field_once(command: str) -> None:
    cls = config_of(command)
    flags = help_flags(command)
    help_text = subparser(command).format_help()
    for f in fields(cls):
        meta = f.metadata
        if meta.get("flag") == "":
            continue  # filled another way: export's recipe from --recipe (below)
        if meta.get("positional"):
            metavar = meta.get("metavar") or f.name
            assert help_text.count(f"\n  {metavar} ") == 1, f"{command}: positional {metavar}"
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        assert flags.count(flag) == 1, f"{command}: {flag} appears {flags.count(flag)} times in --help"
        assert (meta.get("help") or "") != "", f"{command}: {f.name} has no help text"
    assert len(flags) == len(set(flags)), f"{command}: a flag is listed twice: {sorted(flags)}"


@pytest.mark.parametrize("command", STAGE_COMMANDS)
def test_old_flags_and_the_shared_ones_still_parse(command: str) -> None:
    parser = subparser(command)
    known = {s for a in parser._actions for s in a.option_strings}
    missing = [f for f in OLD_FLAGS[command].split() + SHARED if f not in known]
    assert missing == [], f"potstill {command} lost {missing}"


def test_a_flag_fills_its_field_and_overrides_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text("[train]\nepochs = 2\nlr = 0.5\nloss = 'mse'\n")
    args = build_parser().parse_args(
        ["train", "--recipe", str(recipe), "--epochs", "7", "--no-born-again", "--out", "o"]
    )
    cfg = common.resolve_config(args, config_of("train"), "train")
    assert cfg is not None
    assert (cfg.epochs, cfg.lr, cfg.loss, cfg.born_again) == (7, 0.5, "mse", False)
    defaults = config_of("train")()
    assert cfg.temperature == defaults.temperature  # untouched fields keep the dataclass default
    assert dataclasses.replace(cfg, epochs=2, born_again=defaults.born_again, out=defaults.out) == (
        dataclasses.replace(defaults, lr=0.5, loss="mse", epochs=2)
    )


def test_export_quotes_the_recipe_it_was_given(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text("[export]\ndtype = 'float16'\n")
    args = build_parser().parse_args(["export", "m", "--out", "o", "--recipe", str(recipe)])
    cfg = common.resolve_config(args, config_of("export"), "export")
    assert cfg is not None and cfg.recipe == str(recipe) and cfg.dtype == "float16"
