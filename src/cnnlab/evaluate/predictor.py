"""A trained model loaded from a checkpoint: predict on arrays, files or whole sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.imageset import ImageSet
from cnnlab.data.load import LoadOptions, make_splits, read_source
from cnnlab.data.sources.common import adjust, to_uint8_nchw
from cnnlab.device import autocast, resolve_device
from cnnlab.errors import CnnlabError, DataError
from cnnlab.evaluate.inference import evaluate_logits, predict_logits
from cnnlab.evaluate.metrics import compute_metrics
from cnnlab.train.rundir import write_csv
from cnnlab.train.setup import rebuild


class Predictor:
    """A classifier with its class names, input size and normalization, ready to predict."""

    def __init__(self, model: torch.nn.Module, arch: dict, classes: list[str],
                 config: dict | None = None, path: Path | None = None,
                 device: str = "cpu", precision: str = "32") -> None:
        self.device = resolve_device(device)
        self.precision = precision
        autocast(self.device, precision)  # an unusable precision fails here, in one line
        self.module = model.to(self.device).eval()
        self.arch, self.classes, self.config, self.path = arch, classes, config or {}, path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", precision: str = "32") -> Predictor:
        """Load a checkpoint written by cnnlab (weights only: no code in it can run), or .onnx."""
        if Path(path).suffix.lower() == ".onnx":
            from cnnlab.evaluate.onnx_predictor import OnnxPredictor

            return OnnxPredictor.load(path, device, precision)
        ckpt = load_checkpoint(path)
        try:
            model = rebuild(ckpt["arch"], ckpt["model_state"])
        except (KeyError, TypeError) as exc:
            raise CnnlabError(f"{path}: incomplete checkpoint ({exc})") from None
        except CnnlabError as exc:
            raise CnnlabError(f"{path}: {exc}") from None
        return cls(model, ckpt["arch"], list(ckpt["classes"]), ckpt.get("config"), Path(path),
                   device, precision)

    @property
    def image_size(self) -> int:
        """Side of the square images the model takes."""
        return int(self.arch["image_size"])

    @property
    def channels(self) -> int:
        """Image channels the model takes."""
        return int(self.arch["in_channels"])

    def load_options(self, **overrides: object) -> LoadOptions:
        """Options that decode data exactly as training did (size, channels, resize, columns)."""
        c = self.config
        from cnnlab.data.sources.csvindex import CsvColumns

        cols = CsvColumns(c.get("path_column", "filename"), c.get("label_column",
                                                                  "semantic_label"),
                          c.get("numeric_column", "numeric_label"),
                          c.get("partition_column", "partition"), c.get("task_column", "task"))
        opts = LoadOptions(image_size=self.image_size, channels=self.channels,
                           resize=c.get("resize", "crop"), val_split=c.get("val_split", 0.2),
                           test_split=c.get("test_split", 0.2), seed=c.get("seed", 0),
                           task=c.get("task"), columns=cols)
        for k, v in overrides.items():
            if v is not None:
                setattr(opts, k, v)
        return opts

    def to_images(self, x: object) -> torch.Tensor:
        """Arrays [N,H,W]/[N,H,W,C]/[N,C,H,W], a uint8 tensor or file paths -> uint8 NCHW."""
        if isinstance(x, (str, Path)):
            data = read_source(Path(x), self.load_options())
            return data.images
        if isinstance(x, (list, tuple)) and x and isinstance(x[0], (str, Path)):
            from cnnlab.data.decode import decode_image

            size = (self.image_size, self.image_size)
            arr = np.stack([decode_image(Path(p), size, self.channels,
                                         self.config.get("resize", "crop")) for p in x])
            return torch.from_numpy(arr)
        arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        arr = to_uint8_nchw(arr, "input")
        return adjust(arr, (self.image_size, self.image_size), self.channels)

    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Raw scores for uint8 NCHW images."""
        if images.shape[1:] != (self.channels, self.image_size, self.image_size):
            images = adjust(images.numpy(), (self.image_size, self.image_size), self.channels)
        ctx = None if self.precision == "32" else (lambda: autocast(self.device, self.precision))
        return predict_logits(self.module, images, batch_size, self.device, autocast_ctx=ctx)

    def predict_proba(self, x: object) -> np.ndarray:
        """Class probabilities [N, K]."""
        return torch.softmax(self.logits(self.to_images(x)), 1).numpy()

    def predict(self, x: object) -> np.ndarray:
        """Predicted class indices [N]."""
        return self.predict_proba(x).argmax(1)

    def predict_names(self, x: object) -> list[str]:
        """Predicted class names."""
        return [self.classes[i] for i in self.predict(x)]

    def split_of(self, path: str | Path | None, split: str | None, fmt: str = "auto",
                 **opts: object) -> tuple[ImageSet, str]:
        """The items to evaluate or predict on; without PATH, the training data's test split."""
        options = self.load_options(format=fmt, **opts)
        data_path = path if path is not None else self.config.get("data")
        raw = read_source(Path(data_path) if data_path is not None else None, options)
        self._check_classes(raw)
        has_parts = raw.partition is not None and bool((raw.partition != "").any())
        if split == "all" or (split is None and path is not None and not has_parts):
            return raw, "all"
        if not (raw.labels >= 0).any():
            return raw, "all"
        splits = make_splits(raw, options)
        name = split or ("test" if splits.test is not None else "val")
        chosen = splits.get(name)
        if chosen is None or len(chosen) == 0:
            raise DataError(f"{data_path or 'digits'}: no {name} split (choose "
                            f"{', '.join(n for n, _ in splits.items())} or all)")
        return chosen, name

    def _check_classes(self, data: ImageSet) -> None:
        if data.classes and (data.labels >= 0).any() and list(data.classes) != self.classes:
            where = data.meta.get("path") or data.meta.get("name") or "the data"
            raise DataError(f"{where}: the data's classes ({', '.join(data.classes[:6])}) differ "
                            "from the "
                            f"model's ({', '.join(self.classes[:6])})")

    def evaluate(self, data: ImageSet, positive_class: str | None = None) -> dict:
        """All metrics on a labeled ImageSet."""
        if not (data.labels >= 0).any():
            raise DataError("the data has no labels to evaluate against")
        probs, loss = evaluate_logits(self.logits(data.images), data.labels)
        pos = positive_class or self.config.get("positive_class")
        return compute_metrics(data.labels.numpy(), probs, self.classes, loss, pos)

    def write_predictions(self, data: ImageSet, out: str | Path) -> list[dict]:
        """predictions.csv: id, label, class, prob_<class> per row, in input order."""
        probs = torch.softmax(self.logits(data.images), 1).numpy()
        return write_predictions(out, data.ids, probs, self.classes)


def write_predictions(out: str | Path, ids: list[str], probs: np.ndarray,
                      classes: list[str]) -> list[dict]:
    """Write the predictions CSV and return its rows."""
    pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)
    rows = [{"id": i, "label": int(p), "class": classes[p],
             **{f"prob_{c}": float(pr[j]) for j, c in enumerate(classes)}}
            for i, p, pr in zip(ids, pred, probs, strict=True)]
    write_csv(Path(out), rows)
    return rows
