"""CS 475/675 HW3's command line (main_densenet.py, main_convnet.py, main_bestmodel.py):

    python -m cnnlab.compat.cs475 --model densenet --mode train --LR 1e-4 --bs 100 --epochs 2000
    python -m cnnlab.compat.cs475 --model densenet --mode predict \\
        --weights model_files/densenet.pt --predictionsFile densenet_predictions.csv

As the homework specifies: --epochs counts optimization steps; --dataDir (default datasets)
holds any <prefix>_images.npy / <prefix>_labels.npy, <prefix>_dev_* and <prefix>_test_* set;
training writes <modelSaveDir>/<STAMP>_<model>.pt and <logDir>/<STAMP>_<model>.log, STAMP being
YYYYmmddHHMMSS (the homework's YYYYmmddHHMM plus seconds; -2, -3 ... added when that name is
taken, so a second run never overwrites a first); predict mode writes one predicted label per
line. Training is cnnlab's (cnnlab.run.train with settings); the full cnnlab run folder
(steps.csv, plots/curves_steps.png, metrics.json) is kept as <logDir>/<STAMP>_<model>/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from cnnlab import io
from cnnlab.errors import CnnlabError, WrongModelError

MODELS = {"densenet": "cs475-densenet", "convnet": "cs475-convnet", "bestmodel": "cnn"}
SPLITS = {"test": "test", "dev": "val", "train": "train"}
LOG_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc")  # after step and epoch


def parser() -> argparse.ArgumentParser:
    """The homework's arguments, spelled as in its main_*.py files, plus a few optional ones."""
    p = argparse.ArgumentParser(
        prog="python -m cnnlab.compat.cs475",
        description="CS 475 HW3 main_*.py command line on cnnlab (see docs/seeds.md).")
    p.add_argument("--model", required=True, choices=tuple(MODELS),
                   help="densenet (TwoLayerDenseNet), convnet (TooSimpleConvNN) or bestmodel "
                   "(cnnlab's cnn unless --set model=NAME)")
    p.add_argument("--mode", required=True, choices=("train", "predict"))
    p.add_argument("--LR", type=float, help="learning rate (train mode)")
    p.add_argument("--bs", type=int, help="batch size (train mode)")
    p.add_argument("--epochs", type=int, help="optimization steps to train for (train mode)")
    p.add_argument("--weights", help="a .pt file written in train mode (predict mode)")
    p.add_argument("--predictionsFile", help="where predictions go (predict mode)")
    p.add_argument("--dataDir", default="datasets", help="folder of the *_images.npy files")
    p.add_argument("--logDir", default="log_files", help="folder of the .log files")
    p.add_argument("--modelSaveDir", default="model_files", help="folder of the .pt files")
    # cnnlab additions (optional; the homework's commands never need them)
    p.add_argument("--evalEvery", type=int, default=100,
                   help="score the dev split every N steps (the log's dev columns; 0: off)")
    p.add_argument("--predictSplit", default="test", choices=tuple(SPLITS),
                   help="predict mode: which split of --dataDir to predict")
    p.add_argument("--predictionsFormat", default="labels", choices=("labels", "cnnlab"),
                   help="labels: one label per line; cnnlab: id,label,class,prob_* CSV")
    p.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                   help="any other cnnlab setting, e.g. optimizer=sgd, model=resnet18-small, "
                   "augment=hflip (repeatable)")
    return p


def extra_settings(items: list[str]) -> dict:
    """--set KEY=VALUE pairs as cnnlab settings (checked by the settings module)."""
    from cnnlab.settings import SETTINGS, key_value, unknown_keys

    out: dict = {}
    for item in items:
        key, value = key_value(item, "--set", "SETTING=VALUE, e.g. optimizer=sgd")
        key = key.replace("-", "_")
        unknown_keys([key])
        value = SETTINGS[key].check(value)
        # model_args=a=1 given twice: merge
        out[key] = {**out[key], **value} if SETTINGS[key].kind is dict and key in out else value
    return out


def stamp() -> str:
    """The homework's date prefix YYYYmmddHHMM, plus the seconds."""
    return time.strftime("%Y%m%d%H%M%S")


def claim_prefix(model_dir: Path, log_dir: Path, model: str) -> tuple[str, Path]:
    """A free file prefix STAMP_<model> (STAMP-2_<model>, ... when taken) and its model file,
    created empty here with O_EXCL: of two runs started in the same second each gets its own
    names, and nothing an earlier run wrote is overwritten."""
    model_dir.mkdir(parents=True, exist_ok=True)
    when, i = stamp(), 0
    while True:
        i += 1
        prefix = f"{when}{'' if i == 1 else f'-{i}'}_{model}"
        if (log_dir / prefix).exists() or (log_dir / f"{prefix}.log").exists():
            continue
        path = model_dir / f"{prefix}.pt"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return prefix, path


def train_mode(a: argparse.Namespace) -> tuple[Path, Path]:
    """Train with cnnlab; write the model and the log under the homework's names."""
    from cnnlab.run import train

    missing = [f"--{n}" for n in ("LR", "bs", "epochs") if getattr(a, n) is None]
    if missing:
        raise CnnlabError(f"--mode train needs {', '.join(missing)}")
    log_dir, model_dir = Path(a.logDir), Path(a.modelSaveDir)
    given = {"data": a.dataDir, "model": MODELS[a.model], "lr": a.LR, "batch_size": a.bs,
             "steps": a.epochs, "optimizer": "adam", "schedule": "none", "report": False,
             "eval_every": a.evalEvery}
    # The homework's plain loop: Adam at a constant learning rate; --set changes anything.
    given.update(extra_settings(a.set))
    if not Path(a.dataDir).exists():
        raise CnnlabError(f"--dataDir {a.dataDir}: no such folder (the homework's default is "
                          "datasets/ in the current folder)")
    prefix, model_path = claim_prefix(model_dir, log_dir, a.model)
    try:
        result = train({"out": str(log_dir / prefix), **given})  # --set out=DIR wins
        with io.atomic_path(model_path) as tmp:
            shutil.copyfile(result.run_dir / "best.pt", tmp)
    except BaseException:
        model_path.unlink(missing_ok=True)  # the empty file that claimed the name
        raise
    log_path = log_dir / f"{prefix}.log"
    io.write_text(log_path, log_text(a, result))
    print(f"model: {model_path}\nlog: {log_path}")
    return model_path, log_path


def log_text(a: argparse.Namespace, result: object) -> str:
    """The .log file: step-by-step train/dev numbers, then the epochs and the final scores."""
    run_dir, m = result.run_dir, result.metrics
    lines = [f"# cnnlab.compat.cs475 --model {a.model}: LR {a.LR:g}, bs {a.bs}, {a.epochs} "
             f"steps, data {a.dataDir}; cnnlab run folder {run_dir}",
             "step,epoch,train_loss,train_acc,dev_loss,dev_acc"]
    steps = run_dir / "steps.csv"
    for r in io.read_csv(steps) if steps.is_file() else []:
        lines.append(",".join(_cell(r.get(k)) for k in ("step", "epoch", *LOG_COLUMNS)))
    lines.append("# epoch,step,train_loss,train_acc,dev_loss,dev_acc")
    for r in result.history:
        lines.append("# " + ",".join(_cell(r.get(k)) for k in ("epoch", "step", *LOG_COLUMNS)))
    scores = ", ".join(f"{'dev' if n == 'val' else n} accuracy {m[n]['accuracy']:.4f}"
                       for n in ("train", "val", "test")
                       if isinstance(m.get(n), dict) and m[n].get("accuracy") is not None)
    lines.append(f"# saved weights: epoch {result.best_epoch} (lowest dev loss); {scores}; "
                 f"{m.get('train_seconds', 0):.1f} s training")
    return "\n".join(lines) + "\n"


def _cell(v: object) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def predict_mode(a: argparse.Namespace) -> Path:
    """Predict a split of --dataDir with a saved model: one label per line."""
    from cnnlab.evaluate.predictor import Predictor

    missing = [f"--{n}" for n in ("weights", "predictionsFile") if getattr(a, n) is None]
    if missing:
        raise CnnlabError(f"--mode predict needs {', '.join(missing)}")
    # the weights must be of the model --model names (bestmodel: cnn, or --set model=NAME)
    expected = extra_settings(a.set).get("model", MODELS[a.model])
    try:
        model = Predictor.load(a.weights, model=expected)
    except WrongModelError as exc:
        raise CnnlabError(f"{exc}: --model {a.model} predicts with {expected} weights; pass "
                          "the --model the weights were trained with") from None
    data, _ = model.split_of(a.dataDir, SPLITS[a.predictSplit])
    out = Path(a.predictionsFile)
    if a.predictionsFormat == "cnnlab":
        model.write_predictions(data, out)
    else:
        names = model.predict_names(data.images)
        io.write_text(out, "".join(f"{n}\n" for n in names))
    print(f"wrote {len(data)} predictions ({a.predictSplit} split of {a.dataDir}) to {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the homework command; user errors print one line and exit 2."""
    a = parser().parse_args(argv)
    os.umask(os.umask(0o022) | 0o022)
    try:
        if a.mode == "train":
            train_mode(a)
        else:
            predict_mode(a)
    except CnnlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
