"""Settings read from a file: `--config FILE` and `cnnlab.train(config=...)`.

Any run's config.yaml is a valid file, and so is one written by hand with some of its keys.
The file's values count as given (as if typed as options) and what the user gives with it wins.
A run's config.yaml also holds records beside the settings it asked for; they are not read:
`resolved:` (what its defaults came to), `extra` (what cnnlab's own callers add) and `out` (the
folder that run claimed: a folder holds one run, so give --out). Its `resumed:` changes are
applied, as `--resume` applies them, so the file means the settings the run ended with. Any
other key that is not a setting is refused in one line naming the file.

A file never chooses code to run: a custom `module:function` model it names is imported only
when the user names the same builder (--model) or passes --trust-model-code, and the model
arguments it gives must be plain values that the builder's signature takes
(models/registry.py spec_named_by_file, check_file_args).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cnnlab import io
from cnnlab.errors import CnnlabError
from cnnlab.settings import DEFAULT_RECIPE, RECIPES, SETTINGS, SettingsError, check_saved

NOT_READ = ("resolved", "resumed", "extra", "out")  # a run's records, not settings to reuse


def apply_resumed(doc: dict, path: Path) -> dict:
    """A run's config.yaml as first asked plus each resume's changes (its `resumed:` list)."""
    resumed = doc.get("resumed") or []
    if not isinstance(resumed, list):
        raise CnnlabError(f"{path}: resumed: {str(resumed)[:60]!r} is not a list of resumes")
    for entry in resumed:
        changed = entry.get("changed") if isinstance(entry, dict) else None
        for k, pair in (changed or {}).items():
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise CnnlabError(f"{path}: resumed: {k}: {str(pair)[:60]!r} is not an "
                                  "[old, new] pair")
            doc[k] = pair[1]
    return doc


def read_config(path: str | Path, given: Mapping[str, Any], *, trust_code: bool = False,
                takes: Iterable[str] | None = None) -> dict:
    """`given` over the settings of the file at `path`, each checked by its own rule.

    `takes`: the settings the command offers (e.g. an experiment has no --log-every); other
    settings in the file are left out, as the command's own defaults stand for them."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SettingsError(f"--config {p}: no such file")
    doc = apply_resumed(io.read_yaml(p), p)
    for key in doc:
        if key not in SETTINGS and key not in ("data", *NOT_READ):
            near = difflib.get_close_matches(str(key), list(SETTINGS), 1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SettingsError(f"{p}: unknown setting {str(key)[:60]!r}{hint}")
    values = check_saved({k: v for k, v in doc.items() if k not in NOT_READ}, p)
    if takes is not None:
        offered = set(takes)
        values = {k: v for k, v in values.items() if k == "data" or k in offered}
    values = _recipe_switched(values, given)
    if given.get("model") is not None and given["model"] != values.get("model", given["model"]):
        values.pop("model_args", None)  # the file's model arguments are its model's, not yours
    _check_model_code(values, given, p, trust_code)
    return {**values, **given}


def _recipe_switched(values: dict, given: Mapping[str, Any]) -> dict:
    """With another --recipe given, the file's settings still at its own recipe's values (or
    the plain defaults) are dropped, so the new recipe fills them; values chosen stay."""
    if given.get("recipe") is None or "recipe" not in values:
        return values
    old = RECIPES[values["recipe"] or DEFAULT_RECIPE]
    new = RECIPES[SETTINGS["recipe"].check(given["recipe"]) or DEFAULT_RECIPE]
    if old is new:
        return values
    return {k: v for k, v in values.items()
            if k not in {**old, **new} or v != old.get(k, SETTINGS[k].default)}


def _check_model_code(values: dict, given: Mapping[str, Any], path: Path,
                      trust_code: bool) -> None:
    """Never import a builder that the file alone names; its model arguments must be plain
    values the builder takes."""
    from cnnlab.models.registry import check_file_args, get_spec, spec_named_by_file

    named = given.get("model")
    if named is None and "model" in values:
        spec_named_by_file(values["model"], path, None, trust_code)
    if given.get("model_args") is None and values.get("model_args"):
        model = named or values.get("model") or SETTINGS["model"].default
        try:
            spec = get_spec(model)
        except CnnlabError:
            return  # an unknown model name: resolve() says so in its own words
        check_file_args(spec, values["model_args"], path)
