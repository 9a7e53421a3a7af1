"""The Python API: the same code paths and settings as the CLI, for notebooks and scripts."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.data import DataSplits, load_data
from cnnlab.evaluate.predictor import Predictor
from cnnlab.settings import (
    DATA_KEYS,
    SETTINGS,
    SettingsError,
    check_values,
    data_options,
    unknown_keys,
)

# The training code (run.py, train/) is imported by train() alone: cnnlab.load and predicting
# never import it (tests/test_layers.py checks sys.modules after a predict).
if TYPE_CHECKING:
    from cnnlab.run import RunResult
    from cnnlab.train.callbacks import Callback


def train(data: str | Path | DataSplits | None = None, *, resume: bool = False,
          resume_from: str | Path | None = None, force: bool = False, verbose: bool = True,
          callbacks: list[Callback] | None = None, trust_code: bool = False,
          config: str | Path | None = None, **settings: object) -> RunResult:
    """Train a classifier on `data` (path, DataSplits or None for digits); returns the run.

    Every setting of `cnnlab train` is a keyword with the same name and default (lr=...,
    batch_size=..., out=...); an unknown name or invalid value raises the CLI's one-line error.
    `config="runs/X/config.yaml"`: start from the settings of that file (any run's config.yaml
    or one written by hand; its data when `data` is None); the keywords given win.
    `trust_code=True`: on resume or with `config=`, import the custom model the config.yaml
    names without naming it again with `model=`.
    """
    from cnnlab.run import train as run_train

    _check_data(data)
    splits = data if isinstance(data, DataSplits) else None
    given = dict(settings)
    if data is not None and splits is None:
        given["data"] = str(data)
    if config is not None:
        from cnnlab.settings_file import read_config

        if resume or resume_from is not None:
            raise SettingsError("config= starts a new run from a file's settings and resume= "
                                "continues a run with its own: give one of them")
        given = read_config(config, given, trust_code=trust_code)
        if splits is not None:
            given.pop("data", None)
    return run_train(given, resume=resume, resume_from=resume_from, force=force, splits=splits,
                     verbose=verbose, callbacks=callbacks, trust_code=trust_code)


def _check_data(data: object) -> None:
    """Refuse what is no data source (an array's text would otherwise be read as a path)."""
    if data is None or isinstance(data, (str, os.PathLike, DataSplits)):
        return
    kind = f"{type(data).__module__}.{type(data).__qualname__}".removeprefix("builtins.")
    raise SettingsError(f"cnnlab.train(data=...) got {kind}; data must be a path (image "
                        "folder, CSV index, .npy/.npz, CIFAR folder or IDX file), None for the "
                        "built-in digits, or cnnlab.data(path); to train on arrays use "
                        "cnnlab.ImageClassifier().fit(X, y)")


# help(cnnlab.train) and notebooks' completion show every setting with its default.
train.__signature__ = inspect.signature(train).replace(parameters=[  # type: ignore[attr-defined]
    *[p for p in inspect.signature(train).parameters.values() if p.kind != p.VAR_KEYWORD],
    *[inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=s.default)
      for s in SETTINGS.values()]])


def load(path: str | Path | RunResult, device: str = "cpu", precision: str = "32",
         value_range: tuple[float, float] | None = None, model: str | None = None,
         trust_code: bool = False) -> Predictor:
    """Load a trained model from a checkpoint, a run folder (its best.pt), the RunResult
    `cnnlab.train` returned (its best.pt, with the model it was trained with) or an .onnx.

    `value_range=(lo, hi)`: the pixel scale of the non-uint8 arrays you will predict on
    (default: the training data's recorded range, else floats 0..1, integers 0..255).
    `model="package.module:function"`: the builder of a custom model's checkpoint; cnnlab
    never imports code a file names, so such a checkpoint loads only when you name it here
    (or pass `trust_code=True` to accept the name the file holds).
    """
    run = sys.modules.get("cnnlab.run")  # a RunResult exists only once run.py is imported
    if run is not None and isinstance(path, run.RunResult):
        model = model if model is not None else path.config.model  # named in this session
        path = path.run_dir
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt"
    if p.suffix.lower() == ".onnx":
        from cnnlab.evaluate.onnx_predictor import OnnxPredictor

        loaded = OnnxPredictor.load(p, device, precision)
    else:
        loaded = Predictor.load(p, device, precision, model=model, trust_code=trust_code)
    if value_range is not None:
        from cnnlab.data.value_range import parse_range

        loaded.value_range = parse_range(value_range)
    return loaded


def data(path: str | Path | None = None, seed: int = 0, **options: object) -> DataSplits:
    """Read a data source into train/val/test ImageSets (the data settings as keywords)."""
    unknown_keys(options, DATA_KEYS)
    return load_data(path, data_options({**check_values(options), "seed": seed}))
