"""Command-line options derived from the settings model (settings.py).

`@with_settings("data", "model", ...)` adds one option per setting of those groups to a typer
command, grouped in --help by setting group, and hands the command a dict of only the options
the user gave (`settings=`). Defaults, help and allowed values come from SETTINGS, so every
command offers the same options with the same defaults.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from cnnlab.settings import GROUPS, SETTINGS, Setting, in_groups

PANELS = {g: g.capitalize() for g in GROUPS}  # --help's panel of each setting group


DATA_ARG_HELP = ("Image folder, CSV index, .npy/.npz, CIFAR folder or IDX file "
                 "[default: the built-in digits].")
_DEFAULT = re.compile(r"\s*\[default: [^\]]*\]")  # a default written into a setting's help


def _default_text(s: Setting, mode: str) -> str:
    if mode == "saved":
        return "[default: the run's own]"
    if s.default is None or s.default in ({}, []) or "[default:" in s.help:
        return ""  # none, or the help already says it (and what it means)
    if s.kind is bool:
        return f"[default: {'on' if s.default else 'off'}]"
    return f"[default: {s.default}]"


def _metavar(s: Setting) -> str | None:
    return s.metavar or ("|".join(map(str, s.choices)) if s.choices else None)


def setting_option(name: str, help_text: str) -> Any:
    """One setting as an option of a command with its own meaning of it (evaluate's --device
    and --precision): flag and metavar from the definition, help and default from the caller."""
    s = SETTINGS[name]
    return typer.Option(None, s.flag, *s.aliases, metavar=_metavar(s), help=help_text,
                        show_default=False)


def _param(s: Setting, mode: str) -> inspect.Parameter:
    """One typer option for a setting; its default is None so only given values arrive."""
    names = [s.flag, *s.aliases] + ([s.short] if s.short else [])
    metavar = _metavar(s)
    grid = mode in ("grid", "search") and s.sweepable
    varied = ("" if not grid or s.kind is bool else  # a flag takes no list of values
              "Comma-separated values are swept." if mode == "grid" else
              "Searched: LO:HI[:log] (numbers) or V1,V2,...")
    # With the run's own values as defaults, the setting's usual default is not the default.
    own = _DEFAULT.sub("", s.help) if mode == "saved" else s.help
    help_text = " ".join(t for t in (own, varied, _default_text(s, mode)) if t)
    kw: dict[str, Any] = {"help": help_text, "show_default": False,
                          "rich_help_panel": PANELS[s.group]}
    if s.kind is bool:
        names = [f"{s.flag}/--no-{s.flag[2:]}"]
        annotation: Any = bool | None
    else:
        # Values (numbers too) arrive as text and go through Setting.check (see with_settings),
        # so a bad value is the same one line as in the Python API, not typer's usage block.
        annotation = list[str] | None if s.kind is dict else str | None
        if metavar:
            kw["metavar"] = metavar
    return inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY,
                             default=typer.Option(None, *names, **kw), annotation=annotation)


def with_settings(*groups: str, mode: str = "single", skip: tuple[str, ...] = (),
                  config: bool = False) -> Callable[[Callable], Callable]:
    """Decorator: the command gets every setting of `groups` as an option.

    mode "single": one value each; "grid": scalar settings accept V1,V2,... (sweeps);
    "search": the same, numbers also LO:HI[:log] (cnnlab search);
    "saved": defaults come from the trained run (evaluate, predict, explain).
    config: also --config FILE (settings_file.py), the options given winning over the file;
    the file's data path fills the command's PATH argument when none is given.
    """
    chosen = [s for s in in_groups(*groups) if s.cli and s.name not in skip]

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "settings"]
        taken = {p.name for p in own}
        extra = [_param(s, mode) for s in chosen if s.name not in taken]
        if config:
            extra.append(inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY,
                                           default=CONFIG_OPT, annotation=Path | None))
            if "trust_code" not in taken:
                extra.append(inspect.Parameter("trust_code", inspect.Parameter.KEYWORD_ONLY,
                                               default=TRUST_CODE_OPT, annotation=bool))

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            config_file = kwargs.pop("config_file", None)
            trust = kwargs.get("trust_code") if "trust_code" in taken else \
                kwargs.pop("trust_code", False)
            given = {}
            for p in extra:
                v = kwargs.pop(p.name, None)
                if v is None or v == [] or v == ():
                    continue
                v = list(v) if isinstance(v, (list, tuple)) else v
                if mode not in ("grid", "search"):  # lists and ranges are checked per value
                    # A bad value: Setting.check's one line naming the option and the value
                    # (exit 2), the API's text; numbers arrive as text and go on converted.
                    checked = SETTINGS[p.name].check(v)
                    v = checked if SETTINGS[p.name].kind in (int, float) else v
                given[p.name] = v
            if config_file is not None:
                given = _from_file(config_file, given, bool(trust), chosen, kwargs)
            return fn(**kwargs, settings=given)

        wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        return wrapper

    return deco


def _from_file(path: Path, given: dict, trust: bool, chosen: list[Setting],
               kwargs: dict) -> dict:
    """The options given over the settings of a --config file; its data path goes to PATH."""
    from cnnlab.settings import SettingsError
    from cnnlab.settings_file import read_config

    if kwargs.get("resume") or kwargs.get("resume_from") is not None:
        raise SettingsError("--config starts a new run from a file's settings and --resume "
                            "continues a run with its own: give one of them")
    merged = read_config(path, given, trust_code=trust, takes=[s.name for s in chosen])
    data = merged.pop("data", None)
    if data is not None and "path" in kwargs and kwargs["path"] is None:
        kwargs["path"] = Path(data)
    return merged


CONFIG_OPT = typer.Option(
    None, "--config", metavar="FILE", rich_help_panel="Output",
    help="Start from the settings in this YAML file (any run's config.yaml, or one written by "
         "hand); options given with it win.")

# A checkpoint or config.yaml names its model; cnnlab imports a custom builder
# (`module:function`) only when the user names it again or says they trust the file.
MODEL_CODE_OPT = typer.Option(
    None, "--model", metavar="MODULE:FUNCTION",
    help="The custom model builder the checkpoint was trained with. cnnlab never imports code "
         "that a checkpoint names, so a custom model's checkpoint loads only when you name its "
         "builder here (or pass --trust-model-code); built-in models need neither.")
TRUST_CODE_OPT = typer.Option(
    False, "--trust-model-code",
    help="Import the custom model builder that the checkpoint or config.yaml names, without "
         "naming it: that runs its module's code, so only for files you trust.")


__all__ = ["DATA_ARG_HELP", "MODEL_CODE_OPT", "PANELS", "SETTINGS", "TRUST_CODE_OPT",
           "with_settings"]
