"""The settings model itself: TrainConfig's fields are typed and carry their Setting; the one
KEY=VALUE grammar and the one 'may be swept' rule behind every option that uses them."""

from __future__ import annotations

import typing
from dataclasses import fields

import pytest

from cnnlab.cli.experiment_cmds import _grid_option, split_grid
from cnnlab.compat.cs475 import extra_settings
from cnnlab.experiments.search_space import parse_param
from cnnlab.settings import SETTINGS, SettingsError, TrainConfig, key_value, parse_model_args


def test_every_field_is_typed_and_its_setting_is_the_one_the_entry_points_use() -> None:
    hints = typing.get_type_hints(TrainConfig)
    assert hints["lr"] == float | None and hints["epochs"] is int
    assert hints["model_args"] == dict[str, typing.Any] and hints["track"] == list[str]
    for f in fields(TrainConfig):
        assert hints[f.name] is not typing.Any, f.name
        if f.name in ("data", "extra"):
            continue
        s = f.metadata["setting"]
        assert SETTINGS[f.name].default == s[0] and SETTINGS[f.name].group == s[1]
        # the field's own default is the setting's (a fresh copy for lists and dicts)
        default = TrainConfig().to_dict()[f.name]
        assert default == SETTINGS[f.name].default
    a, b = TrainConfig(), TrainConfig()
    a.model_args["width"] = 8
    assert b.model_args == {}


@pytest.mark.parametrize("call, flag", [
    (lambda: parse_model_args(["width8"]), "--model-arg"),
    (lambda: _grid_option(["=1,2"]), "--grid"),
    (lambda: _grid_option(["lr="]), "--grid"),
    (lambda: parse_param("lr"), "--param"),
    (lambda: extra_settings(["optimizer"]), "--set"),
])
def test_every_key_value_option_refuses_a_malformed_pair_in_one_line(call, flag) -> None:
    with pytest.raises(SettingsError) as err:
        call()
    text = str(err.value)
    assert text.startswith(flag + " ") and "expected" in text and "\n" not in text


def test_one_grammar_gives_the_same_pairs_everywhere() -> None:
    assert key_value(" width = 8 ", "--x") == ("width", "8")
    assert parse_model_args("width=8, depth=2,") == {"width": 8, "depth": 2}
    assert _grid_option(["model_args.width=8,16"]) == {"model_args.width": [8, 16]}
    assert extra_settings(["batch-size=32"]) == {"batch_size": 32}
    assert parse_param("lr=0.01")[0] == "lr"


def test_sweep_and_search_vary_exactly_the_sweepable_settings() -> None:
    assert SETTINGS["lr"].sweepable and SETTINGS["optimizer"].sweepable
    assert SETTINGS["model"].sweepable and not SETTINGS["augment"].sweepable
    base, grid = split_grid({"lr": "0.1,0.01", "augment": "hflip,rotate=5"})
    assert grid == {"lr": [0.1, 0.01]} and base == {"augment": "hflip,rotate=5"}
    key, entry, _ = parse_param("optimizer=sgd,adam")
    assert key == "optimizer" and entry is not None
