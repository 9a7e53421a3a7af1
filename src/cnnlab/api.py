"""The Python API: the same code paths as the CLI, for notebooks and scripts."""

from __future__ import annotations

from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.data import DataSplits, LoadOptions, load_data
from cnnlab.evaluate.predictor import Predictor
from cnnlab.train.run import RunResult, run_training


def train(data: str | Path | DataSplits | None = None, model: str = "cnn", epochs: int = 10,
          resume: bool = False, force: bool = False, verbose: bool = True,
          **settings: object) -> RunResult:
    """Train a classifier on `data` (path, DataSplits or None for digits); returns the run.

    Any TrainConfig field may be given as a keyword (lr=..., batch_size=..., out=...).
    """
    splits = data if isinstance(data, DataSplits) else None
    path = None if splits is not None or data is None else str(data)
    cfg = TrainConfig(data=path, model=model, epochs=epochs)
    unknown = [k for k in settings if not hasattr(cfg, k)]
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
    for k, v in settings.items():
        setattr(cfg, k, v)
    return run_training(cfg, resume=resume, force=force, splits=splits, verbose=verbose)


def load(path: str | Path, device: str = "cpu", precision: str = "32",
         value_range: tuple[float, float] | None = None) -> Predictor:
    """Load a trained model from a checkpoint, a run folder (its best.pt) or an exported .onnx.

    `value_range=(lo, hi)`: the pixel scale of the non-uint8 arrays you will predict on
    (default: the training data's recorded range, else floats 0..1, integers 0..255).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt"
    model = Predictor.load(p, device, precision)
    if value_range is not None:
        from cnnlab.data.value_range import parse_range

        model.value_range = parse_range(value_range)
    return model


def data(path: str | Path | None = None, **options: object) -> DataSplits:
    """Read a data source into train/val/test ImageSets (LoadOptions fields as keywords)."""
    return load_data(path, LoadOptions(**options))  # type: ignore[arg-type]
