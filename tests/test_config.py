"""Stage configs: coercion of recipe values and `--set` strings, unknown keys, precedence."""

from __future__ import annotations

import dataclasses

import pytest

from potstill.config import ConfigError, build, config_hash, load_recipe, parse_sets, stage_config, to_dict
from potstill.teacher.encode import EncodeConfig


def test_defaults():
    cfg = build(EncodeConfig)
    assert cfg == EncodeConfig()
    assert (cfg.batch_size, cfg.prompt, cfg.max_seq_length, cfg.skip_invalid) == (64, None, None, False)


@pytest.mark.parametrize(
    ("key", "text", "want"),
    [
        ("batch_size", "16", 16),
        ("max_seq_length", "128", 128),
        ("max_seq_length", "none", None),
        ("max_seq_length", "NULL", None),
        ("prompt", "None", None),
        ("prompt", "query", "query"),
        ("skip_invalid", "true", True),
        ("skip_invalid", "Yes", True),
        ("skip_invalid", "1", True),
        ("skip_invalid", "false", False),
        ("skip_invalid", "no", False),
        ("skip_invalid", "0", False),
        ("teacher", "/models/x", "/models/x"),
    ],
)
def test_set_strings_are_coerced_to_the_field_type(key, text, want):
    value = getattr(build(EncodeConfig, parse_sets([f"{key}={text}"])), key)
    assert value == want and type(value) is type(want)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("batch_size=abc", r"batch_size='abc' should be a int"),
        ("batch_size=1.5", r"batch_size='1.5' should be a int"),
        ("max_seq_length=long", r"max_seq_length='long' should be a int"),
        ("skip_invalid=maybe", r"skip_invalid='maybe' should be true or false"),
        ("batch_size=0", r"batch_size=0 must be >= 1"),
        ("bogus=1", r"unknown setting 'bogus' for EncodeConfig; known: teacher, input, out, batch_size"),
    ],
)
def test_bad_values_and_unknown_keys_are_errors(item, message):
    with pytest.raises(ConfigError, match=message):
        build(EncodeConfig, parse_sets([item]))


def test_parse_sets():
    assert parse_sets(None) == {}
    assert parse_sets([" prompt = a=b ", "out=x.npy"]) == {"prompt": "a=b", "out": "x.npy"}
    with pytest.raises(ConfigError, match=r"--set 'batch_size' should be key=value"):
        parse_sets(["batch_size"])


def test_recipe_values_are_typed_and_later_layers_win():
    cfg = build(EncodeConfig, {"batch_size": 8, "prompt": "query"}, {"batch_size": "16"}, {"prompt": None})
    # An unset (None) later value does not erase an earlier one.
    assert (cfg.batch_size, cfg.prompt) == (16, "query")
    with pytest.raises(ConfigError, match=r"skip_invalid='sometimes' should be true or false"):
        build(EncodeConfig, {"skip_invalid": "sometimes"})


def test_stage_config_precedence(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[encode]\nbatch_size = 8\nprompt = "query"\nmax_seq_length = 32\nteacher = "recipe-teacher"\n'
        "[other]\nbatch_size = 1000\n",
        encoding="utf-8",
    )
    flags = {"teacher": None, "batch_size": 32, "prompt": None, "skip_invalid": None}
    cfg = stage_config(EncodeConfig, "encode", recipe, flags, ["batch_size=16", "prompt=lit", "out=a.npy"])
    # defaults < recipe < --set < flags
    assert cfg.batch_size == 32  # flag over --set over recipe
    assert cfg.prompt == "lit"  # --set over recipe
    assert cfg.max_seq_length == 32 and cfg.teacher == "recipe-teacher"  # recipe over default
    assert cfg.out == "a.npy" and cfg.skip_invalid is False  # --set; default
    assert stage_config(EncodeConfig, "encode", None, {}, None) == EncodeConfig()


def test_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe .*missing\.toml does not exist"):
        load_recipe(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[encode\nbatch_size = 8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"recipe .*bad\.toml is not valid TOML"):
        load_recipe(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[encode]\nbatch_sise = 8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown setting 'batch_sise'"):
        stage_config(EncodeConfig, "encode", unknown, {}, None)
    not_table = tmp_path / "not-table.toml"
    not_table.write_text("encode = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[encode\] should be a table"):
        stage_config(EncodeConfig, "encode", not_table, {}, None)


def test_config_is_frozen_and_hashable_to_json():
    cfg = EncodeConfig(input="a.txt")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 2  # type: ignore[misc]
    assert to_dict(cfg)["input"] == "a.txt"
    assert config_hash(cfg) == config_hash(EncodeConfig(input="a.txt"))
    assert config_hash(cfg) != config_hash(EncodeConfig(input="b.txt"))
    assert len(config_hash(cfg)) == 64
