"""A hyperparameter search space written on the command line, over any setting.

    --lr 1e-4:1e-1:log       a float range, sampled on a log scale
    --label-smoothing 0:0.2  a float range (an int range for integer settings)
    --batch-size 32,64,128   a categorical choice
    --optimizer sgd,adamw    a categorical choice
    --epochs 5               a single value: fixed for every trial

Every bound and choice is checked by the setting's own Setting.check, so a search refuses
exactly what `train` would refuse, before any data is read. `--param model_args.width=8:64`
reaches model arguments (no setting checks them: values are parsed as numbers or text).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.settings import SETTINGS, key_value, parse_value, unknown_keys


def _range(flag: str, text: str, check: Any, integer: bool) -> dict:
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].strip().lower() != "log"):
        raise CnnlabError(f"{flag} {text!r}: expected LO:HI or LO:HI:log")
    lo, hi = check(parts[0].strip()), check(parts[1].strip())
    for v in (lo, hi):
        _require_finite(flag, text, v)
    log = len(parts) == 3
    if not lo < hi:
        raise CnnlabError(f"{flag} {text!r}: the range needs LO < HI")
    if log and lo <= 0:
        raise CnnlabError(f"{flag} {text!r}: a log range needs LO > 0")
    return {"type": "int" if integer else "float", "low": lo, "high": hi, "log": log}


# Optuna samples in float64 and its SQLite storage holds 64-bit integers: larger bounds overflow.
INT_LIMIT = 2**63 - 1


def _require_finite(flag: str, text: str, value: object) -> None:
    """Refuse inf, nan and integers past 64 bits as a bound or value: every trial would fail."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CnnlabError(f"{flag} {text!r}: bounds and values must be finite numbers "
                          f"(at most about 1.8e308), not {value}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        raise CnnlabError(f"{flag} {text!r}: {value:.3g} is too large (the limit is "
                          f"±{INT_LIMIT})")


def _choices(flag: str, text: str, check: Any) -> dict | None:
    values = [check(v.strip()) for v in text.split(",") if v.strip()]
    unique = list(dict.fromkeys(values))
    if len(unique) != len(values):
        raise CnnlabError(f"{flag} {text!r}: repeated values")
    return {"type": "categorical", "choices": unique} if len(unique) > 1 else None


def parse_entry(name: str, raw: Any) -> tuple[dict | None, Any]:
    """(a space entry or None, the fixed value) of one setting given on the command line."""
    s = SETTINGS[name]
    if not isinstance(raw, str) or not s.sweepable:
        return None, raw
    if ":" in raw and s.kind in (int, float):
        return _range(s.flag, raw, s.check, s.kind is int), None
    if "," in raw:
        entry = _choices(s.flag, raw, s.check)
        return (entry, None) if entry else (None, s.check(raw.split(",")[0].strip()))
    return None, raw


def parse_param(item: str) -> tuple[str, dict | None, Any]:
    """--param KEY=SPEC: a setting or model_args.NAME with a range, a list or one value."""
    key, spec = key_value(item, "--param", "KEY=LO:HI[:log], KEY=V1,V2 or KEY=V (e.g. "
                          "model_args.width=8,16)", value_required=True)
    if not key.startswith("model_args."):
        unknown_keys([key])
        entry, fixed = parse_entry(key, spec)
        return key, entry, fixed if entry else SETTINGS[key].check(fixed)
    flag = f"--param {key}"
    if ":" in spec:
        lo, hi = (parse_value(p.strip()) for p in spec.split(":")[:2])
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
            raise CnnlabError(f"{flag}={spec}: a range needs two numbers")
        integer = isinstance(lo, int) and isinstance(hi, int)
        return key, _range(flag, spec, lambda t: parse_value(t) if integer else float(t),
                           integer), None
    def check(t: str) -> object:  # a model_args value: parse_value, finite numbers only
        v = parse_value(t)
        _require_finite(flag, spec, v)
        return v

    if "," in spec:
        entry = _choices(flag, spec, check)
        if entry:
            return key, entry, None
    return key, None, check(spec.split(",")[0].strip())


def split_space(given: Mapping[str, Any], params: list[str] = ()) -> tuple[dict, dict]:
    """(fixed settings, space) from the settings given on the command line and --param items."""
    fixed: dict = {}
    space: dict = {}
    for name, raw in given.items():
        entry, value = parse_entry(name, raw)
        if entry:
            space[name] = entry
        else:
            fixed[name] = value
    for item in params:
        key, entry, value = parse_param(item)
        if entry:
            space[key] = entry
            fixed.pop(key, None)
        elif key.startswith("model_args."):
            fixed.setdefault("model_args", {})
            fixed["model_args"] = {**dict(fixed["model_args"]), key.split(".", 1)[1]: value}
        else:
            fixed[key] = value
    return fixed, space


def first_point(space: Mapping[str, dict]) -> dict:
    """One valid point of the space (the lower bounds and first choices), for early checks."""
    return {k: e["choices"][0] if e["type"] == "categorical" else e["low"]
            for k, e in space.items()}


def suggest(trial: Any, space: Mapping[str, dict]) -> dict:
    """The trial's values for every entry of the space (Optuna's suggest_* API)."""
    out = {}
    for name, e in space.items():
        if e["type"] == "float":
            out[name] = trial.suggest_float(name, e["low"], e["high"], log=e["log"])
        elif e["type"] == "int":
            out[name] = trial.suggest_int(name, e["low"], e["high"], log=e["log"])
        else:
            out[name] = trial.suggest_categorical(name, e["choices"])
    return out


def describe(space: Mapping[str, dict]) -> str:
    """'lr 1e-4..0.1 (log), optimizer {sgd, adamw}' for the console."""
    parts = []
    for name, e in space.items():
        if e["type"] == "categorical":
            parts.append(f"{name} {{{', '.join(map(str, e['choices']))}}}")
        else:
            parts.append(f"{name} {e['low']:g}..{e['high']:g}{' (log)' if e['log'] else ''}")
    return ", ".join(parts)


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def space_problem(space: object) -> str | None:
    """What is wrong with a saved space (search.json's "space"), or None when it is valid."""
    if not isinstance(space, dict) or not space:
        return "must be a non-empty mapping of setting -> range or choices"
    for name, e in space.items():
        kind = e.get("type") if isinstance(e, dict) else None
        if kind == "categorical":
            if not isinstance(e.get("choices"), list) or not e["choices"]:
                return f"{name}: choices must be a non-empty list"
        elif kind in ("int", "float"):
            lo, hi = e.get("low"), e.get("high")
            if not (_number(lo) and _number(hi) and lo < hi):
                return f"{name}: low and high must be finite numbers with low < high"
            if not isinstance(e.get("log"), bool):
                return f"{name}: log must be true or false"
        else:
            return f"{name}: type must be int, float or categorical"
    return None
