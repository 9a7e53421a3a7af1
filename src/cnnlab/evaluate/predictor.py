"""A trained model loaded from a checkpoint: predict on arrays, files or whole sources."""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.imageset import PARTITIONS, DataSplits, ImageSet
from cnnlab.data.load import LoadOptions, make_splits, read_source, read_to_predict
from cnnlab.data.sources.common import adjust, to_uint8_nchw
from cnnlab.data.value_range import default_range, infer_range, parse_range
from cnnlab.device import autocast, resolve_device
from cnnlab.errors import CnnlabError, DataError, name_list
from cnnlab.evaluate.metrics import compute_metrics
from cnnlab.io import write_csv
from cnnlab.models.inference import predict_logits
from cnnlab.models.record import check_arch, check_classes, rebuild
from cnnlab.models.tta import average_probs, parse_tta, probs_and_loss
from cnnlab.models.tta import view_logits as tta_view_logits
from cnnlab.settings import check_positive_class, check_saved, data_options

_PACKAGE = str(Path(__file__).parents[1]) + os.sep  # cnnlab's folder: warnings point outside


class Predictor:
    """A classifier with its class names, input size and normalization, ready to predict.

    Pixel scale of arrays (data/value_range.py): `value_range=(lo, hi)` per call, else the
    predictor's `value_range` (cnnlab.load(..., value_range=...)), else the range the training
    data was read on (checkpoint config `value_range`), else by dtype: uint8 0..255, floats
    0..1, other integers 0..255. Never from the batch's own values. Values outside the range
    are clipped; every batch that does not fit its range (values clipped, or floats that look
    like another scale: 0..255 read on 0..1 or the reverse) gets a one-line UserWarning.

    Probabilities are softmax(logits), averaged over the test-time views of `tta` (the run's
    --tta setting unless changed) and tempered by the checkpoint's `temperature` (fitted by
    --calibrate; 1 otherwise): models/tta.py average_probs.
    """

    value_range: tuple[float, float] | None = None  # set by cnnlab.load(value_range=...)
    temperature: float = 1.0
    tta: str = "none"

    def __init__(self, model: torch.nn.Module, arch: dict, classes: list[str],
                 config: dict | None = None, path: Path | None = None,
                 device: str = "cpu", precision: str = "32") -> None:
        self.device = resolve_device(device)
        self.precision = precision
        self.engine = ""  # the exported engine a report's copy runs in (report/engines.py)
        autocast(self.device, precision)  # an unusable precision fails here, in one line
        self.module = model.to(self.device).eval()
        self.arch, self.classes, self.config, self.path = arch, classes, config or {}, path
        self.tta = parse_tta(self.config.get("tta"))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", precision: str = "32",
             model: str | None = None, trust_code: bool = False) -> Predictor:
        """Load a checkpoint written by cnnlab (weights only: no code in it can run).

        Everything the file holds is checked first. A checkpoint of a custom model
        (`module:function`) loads only when `model` names that builder or `trust_code` is set:
        cnnlab never imports code that a file names."""
        ckpt = load_checkpoint(path)
        try:
            arch = check_arch(ckpt["arch"], path, model, trust_code)
            classes = check_classes(ckpt.get("classes"), arch["num_classes"], path)
            config = check_saved(ckpt.get("config") or {}, path)
            net = rebuild(arch, ckpt["model_state"], path, trust=True)
        except (KeyError, TypeError) as exc:
            raise CnnlabError(f"{path}: incomplete checkpoint ({exc})") from None
        except CnnlabError as exc:  # the same kind of error, its message naming the file
            text = str(exc)
            raise type(exc)(text if text.startswith(str(path)) else f"{path}: {text}") \
                from None
        if config.get("value_range") is None:  # the range the training arrays were read on
            resolved = ckpt.get("resolved") if isinstance(ckpt.get("resolved"), dict) else {}
            config["value_range"] = check_saved(
                {"value_range": resolved.get("value_range")}, f"{path} (resolved)")["value_range"]
        pred = cls(net, arch, classes, config, Path(path), device, precision)
        pred.temperature = _temperature(ckpt.get("temperature"), path)
        return pred

    def __repr__(self) -> str:
        """One line: model, classes, input shape and checkpoint."""
        shown = ", ".join(self.classes[:5]) + (", ..." if len(self.classes) > 5 else "")
        return (f"{type(self).__name__}(model={self.arch.get('name')!r}, {len(self.classes)} "
                f"classes [{shown}], input {self.channels}x{self.image_size}x{self.image_size}"
                f"{', ' + repr(str(self.path)) if self.path else ''})")

    def _repr_html_(self) -> str:
        """Jupyter: the model's facts, plus its run's metrics and plots when it has a run."""
        from cnnlab.evaluate.notebook import model_html

        facts = [("model", str(self.arch.get("name"))),
                 ("classes", f"{len(self.classes)}: {name_list(self.classes)}"),
                 ("input", f"{self.channels} x {self.image_size} x {self.image_size}"),
                 ("device", f"{self.device}, precision {self.precision}")]
        if self.module is not None:
            facts.insert(1, ("parameters", f"{sum(p.numel() for p in self.module.parameters()):,}"))
        if self.path:
            facts.append(("file", str(self.path)))
        # A checkpoint inside a run folder shows that run's metrics and plots too.
        return model_html(f"cnnlab model {self.arch.get('name')}", facts,
                          self.path.parent if self.path else None)

    @property
    def image_size(self) -> int:
        """Side of the square images the model takes."""
        return int(self.arch["image_size"])

    @property
    def channels(self) -> int:
        """Image channels the model takes."""
        return int(self.arch["in_channels"])

    def load_options(self, **overrides: object) -> LoadOptions:
        """Options that read data exactly as training did (size, channels, resize, CSV columns,
        image folder, layout, crop, value range, split seed); `overrides` not None win."""
        opts = data_options(self.config, **overrides)
        crop = opts.crop_size  # decoded at the run's image_size, then centre-cropped
        opts.image_size = (self.config.get("image_size") or self.image_size) if crop \
            else self.image_size
        opts.channels = self.channels
        opts.value_range = self.value_range or self.config.get("value_range")
        return opts

    def input_range(self, x: np.ndarray, value_range: object = None) -> tuple[float, float]:
        """The scale an input array is read on (never from its individual values)."""
        if x.dtype == np.uint8:
            return 0.0, 255.0  # uint8 is always 0..255
        chosen = value_range if value_range is not None else self.value_range
        if chosen is None:
            chosen = self.config.get("value_range")
        return parse_range(chosen) if chosen is not None else default_range(x.dtype)

    def to_images(self, x: object, value_range: object = None) -> torch.Tensor:
        """Arrays [N,H,W]/[N,H,W,C]/[N,C,H,W], a uint8 tensor or file paths -> uint8 NCHW."""
        if isinstance(x, (str, Path)):
            return read_source(Path(x), self.load_options()).images
        if isinstance(x, (list, tuple)) and x and isinstance(x[0], (str, Path)):
            from cnnlab.data.decode import decode_image

            o = self.load_options()
            size = (o.image_size, o.image_size)
            arr = np.stack([decode_image(Path(p), size, self.channels, o.resize, o.crop_size)
                            for p in x])
            return torch.from_numpy(arr)
        arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            arr = to_uint8_nchw(arr, "input")  # raises the one-line dtype error
        rng = self.input_range(arr, value_range)
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DataError("input: images contain NaN or infinite values")
        if (note := self._range_note(arr, rng, value_range is not None)) is not None:
            _warn_each_time(note)
        arr = to_uint8_nchw(arr, "input", rng)
        return adjust(arr, (self.image_size, self.image_size), self.channels)

    def _range_note(self, arr: np.ndarray, rng: tuple[float, float], explicit: bool
                    ) -> str | None:
        """The one-line note for a batch read on a scale it does not fit: values clipped, or
        floats that look like another scale (0..1 read on 0..255); None when it fits."""
        if arr.dtype == np.uint8 or arr.size == 0:
            return None
        lo, hi = rng
        clipped = int(np.count_nonzero((arr < lo) | (arr > hi)))
        floats = np.issubdtype(arr.dtype, np.floating)
        looks = infer_range(arr) if floats and not explicit else rng
        other = looks if looks != rng and looks in ((0.0, 1.0), (0.0, 255.0)) else None
        if not clipped and other is None:
            return None
        text = (f"input: {clipped} of {arr.size} pixel values outside the value range "
                f"{lo:g}..{hi:g} were clipped" if clipped else
                f"input: pixel values read on {lo:g}..{hi:g}")
        if not explicit:
            why = ("the value_range given to cnnlab.load" if self.value_range is not None else
                   "the scale of the model's training data" if self.config.get("value_range")
                   is not None else f"the default for {arr.dtype} arrays")
            text += f" ({why}; this batch spans {float(arr.min()):.4g}..{float(arr.max()):.4g})"
        if other is not None:
            return text + (f"; if it is on {other[0]:g}..{other[1]:g}, pass "
                           f"value_range=({other[0]:g}, {other[1]:g})")
        return text + " (pass value_range=(lo, hi) to read the input on another scale)"

    def _sized(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW images at the model's channels and size (resized only when needed)."""
        if images.shape[1:] != (self.channels, self.image_size, self.image_size):
            images = adjust(images.numpy(), (self.image_size, self.image_size), self.channels)
        return images

    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Raw scores for uint8 NCHW images."""
        images = self._sized(images)
        ctx = None if self.precision == "32" else (lambda: autocast(self.device, self.precision))
        return predict_logits(self.module, images, batch_size, self.device,
                              getattr(self, "channels_last", False), autocast_ctx=ctx)

    def view_logits(self, images: torch.Tensor, tta: str | None = None) -> torch.Tensor:
        """Raw scores [V, N, K] of uint8 NCHW images under each test-time view (`tta`, else the
        predictor's); V = 1 without TTA."""
        return tta_view_logits(self.logits, self._sized(images), self.tta if tta is None else tta)

    def probabilities(self, images: torch.Tensor, tta: str | None = None) -> torch.Tensor:
        """Calibrated class probabilities [N, K] of uint8 NCHW images, averaged over views."""
        return average_probs(self.view_logits(images, tta), self.temperature)

    def predict_proba(self, x: object, value_range: object = None) -> np.ndarray:
        """Class probabilities [N, K]; arrays are read on `value_range` (lo, hi) when given."""
        return self.probabilities(self.to_images(x, value_range)).numpy()

    def predict(self, x: object, value_range: object = None) -> np.ndarray:
        """Predicted class indices [N]."""
        return self.predict_proba(x, value_range).argmax(1)

    def predict_names(self, x: object, value_range: object = None) -> list[str]:
        """Predicted class names."""
        return [self.classes[i] for i in self.predict(x, value_range)]

    def split_of(self, path: str | Path | None, split: str | None, need_labels: bool = True,
                 **overrides: object) -> tuple[ImageSet, str]:
        """The items to evaluate or predict on; without PATH, the training data's test split.

        `need_labels=False` (predicting): a folder that is not a tree of the model's class
        folders is read all the same, its labels unknown (-1; data/load.py read_to_predict).
        `overrides` are data settings (format, task, image_dir, CSV columns, ...) given on the
        command line; the rest are the run's own."""
        if split is not None and split not in (*PARTITIONS, "all"):  # before any read
            raise DataError(f"--split {split!r}: choose train, val, test or all")
        options = self.load_options(**overrides)
        data_path = path if path is not None else self.config.get("data")
        source = Path(data_path) if data_path is not None else None
        if need_labels:
            raw = read_source(source, options)
            self._check_classes(raw)
        else:
            raw = read_to_predict(source, options, self.classes)
        has_parts = raw.partition is not None and bool((raw.partition != "").any())
        if split == "all" or (split is None and path is not None and not has_parts):
            return raw, "all"
        if not (raw.labels >= 0).any():
            return raw, "all"
        splits = make_splits(raw, options)
        name = split or ("test" if splits.test is not None else "val")
        return _split_named(splits, name, data_path), name

    def splits_for(self, path: str | Path | None, split: str | None, **overrides: object
                   ) -> list[tuple[ImageSet, str]]:
        """The (items, name) to evaluate, one per split: `split` is one name, a comma list
        (train,val,test) or "all" (every labeled split of the training data or a partitioned
        source; a new unpartitioned source is one set, "all")."""
        names = [n.strip() for n in (split or "").split(",") if n.strip()]
        if len(names) <= 1 and names != ["all"]:
            return [self.split_of(path, split, **overrides)]
        options = self.load_options(**overrides)
        data_path = path if path is not None else self.config.get("data")
        raw = read_source(Path(data_path) if data_path is not None else None, options)
        self._check_classes(raw)
        has_parts = raw.partition is not None and bool((raw.partition != "").any())
        same = path is None or str(Path(path).expanduser().resolve()) == self.config.get("data")
        if names == ["all"] and not (has_parts or same):
            return [(raw, "all")]
        if not (raw.labels >= 0).any():
            raise DataError(f"{data_path}: no labels to evaluate against")
        splits = make_splits(raw, options)
        if names == ["all"]:
            return [(s, n) for n, s in splits.items() if bool((s.labels >= 0).any())]
        out = []
        for n in names:
            if n not in PARTITIONS:
                raise DataError(f"--split {split!r}: {n!r} is not train, val or test")
            out.append((_split_named(splits, n, data_path), n))
        return out

    def _check_classes(self, data: ImageSet) -> None:
        if data.classes and (data.labels >= 0).any() and list(data.classes) != self.classes:
            where = data.meta.get("path") or data.meta.get("name") or "the data"
            raise DataError(f"{where}: the data's classes ({name_list(data.classes)}) differ "
                            f"from the model's ({name_list(self.classes)})")

    def evaluate(self, data: ImageSet, positive_class: str | None = None) -> dict:
        """All metrics on a labeled ImageSet."""
        check_positive_class(positive_class, self.classes, "model")
        if not (data.labels >= 0).any():
            raise DataError("the data has no labels to evaluate against")
        probs, loss = probs_and_loss(self.view_logits(data.images), data.labels,
                                     self.temperature)
        pos = positive_class or self.config.get("positive_class")
        return compute_metrics(data.labels.numpy(), probs, self.classes, loss, pos)

    def write_predictions(self, data: ImageSet, out: str | Path) -> list[dict]:
        """predictions.csv: id, label, class, prob_<class> per row, in input order."""
        probs = self.probabilities(data.images).numpy()
        return write_predictions(out, data.ids, probs, self.classes)


def _split_named(splits: DataSplits, name: str, data_path: object) -> ImageSet:
    """The split `name`, or one line naming the splits there are."""
    chosen = splits.get(name)
    if chosen is None or len(chosen) == 0:
        raise DataError(f"{data_path or 'digits'}: no {name} split (choose "
                        f"{', '.join(n for n, _ in splits.items())} or all)")
    return chosen


def write_predictions(out: str | Path, ids: list[str], probs: np.ndarray,
                      classes: list[str]) -> list[dict]:
    """Write the predictions CSV and return its rows."""
    pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)
    rows = [{"id": i, "label": int(p), "class": classes[p],
             **{f"prob_{c}": float(pr[j]) for j, c in enumerate(classes)}}
            for i, p, pr in zip(ids, pred, probs, strict=True)]
    write_csv(Path(out), rows)
    return rows


def _warn_each_time(message: str) -> None:
    """A UserWarning on every call, pointing at the caller's line outside cnnlab: warnings.warn
    shows a repeated text once per line (the default filter), and a batch read on the wrong
    scale must never pass silently. An "ignore" filter still silences it."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    warnings.warn_explicit(message, UserWarning, frame.f_code.co_filename, frame.f_lineno,
                           module=frame.f_globals.get("__name__"), registry=None,
                           module_globals=frame.f_globals)


def _temperature(value: object, source: object) -> float:
    """The calibration temperature a checkpoint holds (1 when it has none)."""
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise CnnlabError(f"{source}: temperature {value!r} is not a positive number")
    return float(value)
