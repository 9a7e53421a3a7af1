"""Experiment trackers as callbacks: TensorBoard event files and MLflow runs (`--track`).

Each tracker is a plain Callback; `tracking_callbacks(cfg)` wraps every one the run asked for
in a Guard, so a tracker that fails (a full disk, a server that went away, a bug) prints one
warning line and is switched off while the run itself goes on: tracking is a copy of what the
run folder already holds, never a reason to lose it.

Trackers see one event more than the loop's callbacks: on_run_end(ctx, metrics, error),
sent by run.py after finalize() wrote metrics.json, plots/ and report.html (so they can be
uploaded), or with `error` set when the run failed or was interrupted.

A tracker never holds a run up either: before the MLflow store is opened it is checked with
one short probe (an HTTP request, a TCP connect or the SQLite file's folder, a few seconds at
most), an unusable store is one warning, and the verdict is kept for a few minutes, so the
members of a sweep or search do not each wait for it (or say it) again. MLflow's own HTTP
retries (7 tries of up to 120 s each by default) are cut to one retry of 15 s while cnnlab
calls it.

The packages are an extra (`pip install -e '.[track]'`) and are imported only when asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cnnlab import urls
from cnnlab.console import console
from cnnlab.errors import CnnlabError
from cnnlab.train import distributed
from cnnlab.train.events import Callback, FitContext

if TYPE_CHECKING:
    from cnnlab.settings import TrainConfig

INSTALL_HINT = "pip install -e '.[track]'"
SPLITS = ("train", "val", "test")
FINAL_KEYS = ("accuracy", "balanced_accuracy", "loss", "precision", "recall", "f1", "auroc")
# Shown first (HParams) and flagged as what to compare runs by: what a reader asks first.
KEY_SETTINGS = ("model", "lr", "optimizer", "batch_size", "epochs", "schedule", "augment",
                "weight_decay", "recipe")
MLFLOW_ID_FILE = "mlflow.json"  # the run folder's MLflow run, so a resume continues it
STEP_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call
PROBE_SECONDS = 5.0  # a tracking server that has not answered by then is unreachable
# While cnnlab calls MLflow (variables the user set win): a server that goes away mid-run costs
# one retry of 15 s, once, not MLflow's 7 retries of up to 120 s on every call.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
# MLflow 3 opens an experiment in the view its kind tag names; without it, in the GenAI one.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# The few final scores logged as metrics, to sort and compare runs by (e.g. the members of a
# sweep); a single point each, named like the per-epoch curves (val_acc, val_loss).
SUMMARY_METRICS = {"accuracy": "acc", "loss": "loss"}


def _require(module: str, tracker: str) -> None:
    """Fail before training when a tracker's package is missing (one line, how to get it)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise CnnlabError(f"--track {tracker}: the {module} package is not installed; run "
                          f"{INSTALL_HINT}")


def flat_params(cfg: Any, resolved: dict) -> dict[str, Any]:
    """The run's settings as flat name -> value pairs (model_args.width, ...), each the value
    that ran: a setting resolved when the run started shows what it resolved to (lr: the
    optimizer's default, not none; device: cpu, not auto)."""
    out: dict[str, Any] = {}
    for key, value in {**cfg.to_dict(), **resolved}.items():
        if key in ("extra", "track", "track_uri"):
            continue
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def leading_params(cfg: Any, params: dict[str, Any]) -> list[str]:
    """The names of `params` a tracker shows first: the key settings (KEY_SETTINGS, the
    model's arguments), then those set away from their default that change what is learnt."""
    from cnnlab.settings import SETTINGS

    given = cfg.to_dict()
    changed = [k for k, s in SETTINGS.items() if s.affects_result and k != "model_args"
               and given.get(k) != s.default]
    names = [*KEY_SETTINGS, *sorted(k for k in params if k.startswith("model_args.")), *changed]
    return [k for k in dict.fromkeys(names) if k in params]


def final_metrics(metrics: dict) -> dict[str, float]:
    """The best checkpoint's scores per split from metrics.json, e.g. final.test.accuracy."""
    out = {}
    for split in SPLITS:
        m = metrics.get(split)
        if not isinstance(m, dict):
            continue
        for key in FINAL_KEYS:
            v = m.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"final.{split}.{key}"] = float(v)
    for key in ("best_epoch", "train_seconds"):
        if isinstance(metrics.get(key), (int, float)):
            out[f"final.{key}"] = float(metrics[key])
    return out


def summary_markdown(metrics: dict) -> str:
    """The best checkpoint's scores as one Markdown table (split x score), and its epoch."""
    scores = final_metrics(metrics)
    cols = [k for k in FINAL_KEYS if any(f"final.{s}.{k}" in scores for s in SPLITS)]
    lines = ["| split | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for split in SPLITS:
        if any(f"final.{split}.{c}" in scores for c in cols):
            cells = [f"{scores[k]:.4f}" if (k := f"final.{split}.{c}") in scores else ""
                     for c in cols]
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
    tail = [f"best epoch {metrics['best_epoch']}" if metrics.get("best_epoch") else "",
            f"{metrics['train_seconds']:.1f} s of training"
            if isinstance(metrics.get("train_seconds"), (int, float)) else "",
            "every score: metrics.json"]
    return "\n".join(lines) + "\n\n" + "; ".join(t for t in tail if t) + "\n"


def epoch_scalars(row: dict) -> dict[str, float]:
    """The numbers of one metrics.csv row (None: no validation split)."""
    return {k: float(v) for k, v in row.items()
            if k not in ("epoch", "step") and isinstance(v, (int, float))}


# ---- TensorBoard ---------------------------------------------------------------------------
class TensorBoardLogger(Callback):
    """Event files in the run folder: `tensorboard --logdir runs` shows every run by name.

    Scalars use the global step as x axis (per step: loss and lr; per epoch: train/val loss
    and accuracy, epoch); the end of the run adds the final scores, the hyperparameters
    (HParams tab) and the run's figures (curves, confusion matrix, failures) as images.
    """

    name = "tensorboard"

    def __init__(self, cfg: Any) -> None:
        _require("tensorboard", self.name)
        self.writer = None

    def on_fit_start(self, ctx: FitContext) -> None:
        """Open (or, on resume, append to) the run folder's event file."""
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a crash left beyond the checkpoint being resumed.
        purge = ctx.state.global_step + 1 if ctx.state.global_step else None
        self.writer = SummaryWriter(log_dir=str(ctx.run_dir), purge_step=purge,
                                    flush_secs=30)

    def on_step_end(self, ctx: FitContext, loss: float) -> None:
        """Loss and learning rate of this step."""
        step = ctx.state.global_step
        self.writer.add_scalar("step/loss", loss, step)
        self.writer.add_scalar("step/lr", ctx.current_lr(), step)

    def on_step_val(self, ctx: FitContext, row: dict) -> None:
        """A mid-epoch validation (--eval-every): step/val_loss and step/val_acc."""
        for key in ("val_loss", "val_acc"):
            if row.get(key) is not None:
                self.writer.add_scalar(f"step/{key}", float(row[key]), int(row["step"]))

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """The epoch's metrics.csv row."""
        step = ctx.state.global_step
        for key, value in epoch_scalars(row).items():
            split, _, what = key.partition("_")
            tag = f"{'loss' if what == 'loss' else 'accuracy'}/{split}" \
                if what in ("loss", "acc") else f"epoch/{key}"
            self.writer.add_scalar(tag, value, step)
        self.writer.add_scalar("epoch/epoch", row["epoch"], step)
        self.writer.flush()

    def on_run_end(self, ctx: FitContext, metrics: dict | None,
                   error: BaseException | None) -> None:
        """Final scores, hyperparameters and figures; then close the file."""
        if self.writer is None:
            return
        if metrics is not None:
            step = ctx.state.global_step
            # final.test.accuracy -> final/test_accuracy: TensorBoard groups charts by "/".
            final = {"final/" + k[len("final."):].replace(".", "_"): v
                     for k, v in final_metrics(metrics).items()}
            for tag, value in final.items():
                self.writer.add_scalar(tag, value, step)
            # Written into this run's own event file: SummaryWriter.add_hparams would make a
            # second, timestamped run folder for every run.
            for summary in hparam_summaries(ctx.cfg, ctx.resolved, final):
                self.writer.file_writer.add_summary(summary)
            for png in sorted((ctx.run_dir / "plots").glob("*.png")):
                self.writer.add_image(f"plots/{png.stem}", _read_png(png), step,
                                      dataformats="HWC")
        self.close()

    def close(self) -> None:
        """Flush events (also called after an error, and again at the end)."""
        if self.writer is not None:
            self.writer.flush()

    def abort(self) -> None:
        """Close after a failure of this logger."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def hparam_summaries(cfg: Any, resolved: dict, final: dict[str, float]) -> list[Any]:
    """The HParams tab's summaries: the settings that ran, leading ones flagged.

    TensorBoard lists the hyperparameters flagged `differs` first, each group by name, and
    shows the first five: flagging the key settings and those changed from their default puts
    model, lr, batch_size... there instead of accumulate, augment, backbone_lr_mult...
    """
    from tensorboard.plugins.hparams import plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams

    params = flat_params(cfg, resolved)
    lead = leading_params(cfg, params)
    hp = {k: v if isinstance(v := params[k], (int, float, bool)) else _param_text(v)
          for k in [*lead, *(k for k in params if k not in lead)]}
    experiment, *rest = hparams(hp, final)
    plugin = experiment.value[0].metadata.plugin_data
    data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in lead
    plugin.content = data.SerializeToString()
    return [experiment, *rest]


def _read_png(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ---- MLflow --------------------------------------------------------------------------------
def default_mlflow_uri(cfg: Any) -> str:
    """sqlite:///<runs_dir>/mlflow.db (absolute), or --track-uri (the folder is made by the
    store check, inside the guard: a read-only runs folder costs the tracker, not the run)."""
    if cfg.track_uri:
        return cfg.track_uri
    runs = Path(cfg.runs_dir or "runs").expanduser().resolve()
    return f"sqlite:///{runs / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go next to the database (<runs_dir>/mlartifacts/...), not
    into ./mlruns of whatever folder cnnlab was started from; a server decides for itself."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):])
    return (db.parent / "mlartifacts").resolve().as_uri()


class TrackerUnavailable(Exception):
    """The tracker's store cannot be used; `repeat`: this process already said so once."""

    def __init__(self, reason: str, repeat: bool = False) -> None:
        super().__init__(reason)
        self.repeat = repeat


# Store URI -> (time.monotonic() of the verdict, why it cannot be used), for this process.
_UNUSABLE: dict[str, tuple[float, str]] = {}
# How long a verdict holds: the members of an experiment reuse it (no wait, no second warning),
# while a notebook that retries minutes later, after the server was started, probes again.
VERDICT_SECONDS = 300.0


def check_store(uri: str) -> None:
    """Raise TrackerUnavailable, within a few seconds, when the MLflow store cannot be used; the
    verdict is kept, so the next member of the experiment does not probe (and wait) again."""
    import time

    found = _UNUSABLE.get(uri)
    if found is not None and time.monotonic() - found[0] < VERDICT_SECONDS:
        raise TrackerUnavailable(found[1], repeat=True)
    try:
        _probe(uri)
    except TrackerUnavailable as exc:
        _UNUSABLE[uri] = (time.monotonic(), str(exc))
        raise
    _UNUSABLE.pop(uri, None)


def _probe(uri: str) -> None:
    if urls.is_masked(uri):
        raise TrackerUnavailable(f"{uri} has its password masked (saved settings keep no "
                                 "secrets); give --track-uri again")
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower().partition("+")[0]
    if not sep or scheme == "file":
        _probe_folder(Path(rest if sep else uri).expanduser())
    elif scheme == "sqlite":
        if rest.startswith("/") and ":memory:" not in rest:
            _probe_sqlite(Path(rest[1:]).expanduser())
    elif scheme in ("http", "https"):
        _probe_http(uri)
    else:
        _probe_tcp(uri, DEFAULT_PORTS.get(scheme))


def _probe_folder(folder: Path) -> None:
    """The folder exists (or is made) and can be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackerUnavailable(f"cannot create {folder} ({exc.strerror or exc})") from None
    # os.access, unlike the mode bits, sees read-only mounts and immutable folders, also as root.
    if not os.access(folder, os.W_OK):
        raise TrackerUnavailable(f"{folder} is read-only")


def _probe_sqlite(db: Path) -> None:
    """The database's folder and file can be written and the file is a database: MLflow itself
    retries a store it cannot open for about 100 s, with a warning per try."""
    import sqlite3

    _probe_folder(db.parent)
    if not db.exists():
        return
    if not os.access(db, os.R_OK | os.W_OK):
        raise TrackerUnavailable(f"{db} is read-only")
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            con.execute("PRAGMA schema_version").fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise TrackerUnavailable(f"{db}: {exc}") from None


def _probe_http(uri: str) -> None:
    """One request with a short timeout; any HTTP answer (even 404) means a server is there."""
    import requests

    parts = urlsplit(uri)
    plain = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path or '/'}"
    try:
        requests.get(plain, timeout=(PROBE_SECONDS, PROBE_SECONDS), allow_redirects=False)
    except requests.exceptions.SSLError:
        return  # it answered; certificates are MLflow's business (its own TLS settings)
    except requests.exceptions.Timeout:
        raise TrackerUnavailable(f"{urls.mask_url(uri)} did not answer within "
                                 f"{PROBE_SECONDS:g} s") from None
    except (requests.exceptions.RequestException, ValueError):
        raise TrackerUnavailable(f"cannot connect to {urls.mask_url(uri)}") from None


def _probe_tcp(uri: str, default_port: int | None) -> None:
    """A database server: its port accepts a connection within the probe time."""
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port or default_port
    except ValueError:
        raise TrackerUnavailable(f"{urls.mask_url(uri)} is not a valid URI") from None
    if not host or not port:
        return  # e.g. databricks: a profile, not a host; MLflow knows what to do
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise TrackerUnavailable(f"cannot connect to {urls.mask_url(uri)} "
                                 f"({exc.strerror or 'timed out'})") from None


def experiment_name(run_dir: Path) -> str:
    """MLFLOW_EXPERIMENT_NAME, else the experiment folder of a member (sweep, cv, ...), else
    'cnnlab'."""
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return os.environ["MLFLOW_EXPERIMENT_NAME"]
    if run_dir.parent.name == "members":
        return run_dir.parent.parent.name
    return "cnnlab"


class MlflowLogger(Callback):
    """One MLflow run per run folder, in an experiment of model training: the settings that
    ran as params; curves per epoch (train_loss, val_acc, ..., x: the epoch) and per step
    (step_loss, step_lr, x: the global step); the final scores as the run's description (a
    table) and test_acc/test_loss; and report.html, metrics.json, best.pt, config.yaml,
    metrics.csv and plots/ as artifacts. A resumed run continues the same MLflow run (its id
    is kept in mlflow.json). The end of a run prints where it went."""

    name = "mlflow"

    def __init__(self, cfg: Any) -> None:
        _require("mlflow", self.name)
        self.uri = default_mlflow_uri(cfg)
        self.client: Any = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.steps: list[Any] = []

    def on_fit_start(self, ctx: FitContext) -> None:
        """Create the MLflow run (or reopen the one of the run being resumed)."""
        check_store(self.uri)  # first: an unusable store costs neither MLflow's import nor waits
        import logging

        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        # Creating the SQLite tables logs a few INFO lines through alembic; the console is
        # the progress bar's.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=urls.with_installed_driver(
            urls.encode_password(self.uri), "--track-uri"))
        saved = ctx.run_dir / MLFLOW_ID_FILE
        old = json.loads(saved.read_text()) if saved.is_file() else {}
        shown = urls.mask_url(self.uri)  # mlflow.json is a file of the run folder: no secrets
        if ctx.state.global_step and old.get("uri") == shown and old.get("run_id"):
            self.run_id = old["run_id"]
            self.experiment_id = old.get("experiment_id")
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, "cnnlab.resumed_at_step",
                                str(ctx.state.global_step))
            return
        exp_id = self.experiment_id = self._experiment(experiment_name(ctx.run_dir))
        run = self.client.create_run(exp_id, run_name=ctx.run_dir.name, tags={
            "cnnlab.run_dir": str(ctx.run_dir.resolve()), "mlflow.source.name": "cnnlab",
            "cnnlab.data": _param_text(ctx.cfg.data or "digits"),
            "cnnlab.model": ctx.cfg.model})
        self.run_id = run.info.run_id
        params = [Param(k, _param_text(v))
                  for k, v in flat_params(ctx.cfg, ctx.resolved).items()]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        from cnnlab import io

        io.write_json(saved, {"uri": shown, "run_id": self.run_id, "experiment_id": exp_id})

    @contextlib.contextmanager
    def limits(self) -> Iterator[None]:
        """The context the guard runs each call of this tracker in: HTTP_LIMITS in the
        environment (short HTTP retries)."""
        added = {k: v for k, v in HTTP_LIMITS.items() if k not in os.environ}
        os.environ.update(added)
        try:
            yield
        finally:
            for key in added:
                os.environ.pop(key, None)

    def _experiment(self, name: str) -> str:
        """The experiment's id, created (or, made before cnnlab tagged them, tagged) as one of
        model training; a kind someone else set is theirs to keep."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(
                    name, artifact_location=artifact_root(self.uri), tags=EXPERIMENT_KIND)
            except Exception:  # another process created it a moment ago
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        for key, value in EXPERIMENT_KIND.items():
            if key not in exp.tags:
                self.client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id

    def on_step_end(self, ctx: FitContext, loss: float) -> None:
        """Buffer the step's loss and lr; sent with the epoch (one database write per epoch)."""
        from mlflow.entities import Metric

        s, now = ctx.state, _millis()
        self.steps.append(Metric("step_loss", float(loss), now, s.global_step))
        self.steps.append(Metric("step_lr", float(ctx.current_lr()), now, s.global_step))

    def on_step_val(self, ctx: FitContext, row: dict) -> None:
        """Buffer a mid-epoch validation (--eval-every) as step_val_loss/step_val_acc."""
        from mlflow.entities import Metric

        now = _millis()
        self.steps += [Metric(f"step_{k}", float(row[k]), now, int(row["step"]))
                       for k in ("val_loss", "val_acc") if row.get(k) is not None]

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """The epoch's metrics (x axis: the epoch) and the buffered step metrics."""
        from mlflow.entities import Metric

        now = _millis()
        batch = self.steps + [Metric(k, v, now, int(row["epoch"]))
                              for k, v in epoch_scalars(row).items()]
        self.steps = []
        self._send(batch)

    def _send(self, metrics: list[Any]) -> None:
        for i in range(0, len(metrics), STEP_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + STEP_BATCH])

    def on_run_end(self, ctx: FitContext, metrics: dict | None,
                   error: BaseException | None) -> None:
        """Final scores and artifacts, then mark the run FINISHED (FAILED/KILLED on error)."""
        if self.client is None or self.run_id is None:
            return
        from mlflow.entities import Metric

        if self.steps:  # steps of an epoch cut short
            self._send(self.steps)
            self.steps = []
        if metrics is not None:
            now, epoch = _millis(), ctx.state.epoch
            test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
            self._send([Metric(f"test_{short}", float(test[key]), now, epoch)
                        for key, short in SUMMARY_METRICS.items()
                        if isinstance(test.get(key), (int, float))])
            # The run page opens on its description: the scores at a glance, not 21 charts.
            self.client.set_tag(self.run_id, "mlflow.note.content", summary_markdown(metrics))
            run_dir = ctx.run_dir
            for name in ("report.html", "metrics.json", "best.pt", "config.yaml",
                         "metrics.csv", "predictions.csv", "steps.csv"):
                if (run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(run_dir / name))
            if (run_dir / "plots").is_dir():
                self.client.log_artifacts(self.run_id, str(run_dir / "plots"), "plots")
        status = "FINISHED" if error is None else "KILLED" if _interrupted(error) else "FAILED"
        self.client.set_terminated(self.run_id, status)
        if ctx.verbose:
            console.print(self.where(status), highlight=False, soft_wrap=True)
        self.run_id = None

    def where(self, status: str = "FINISHED") -> str:
        """One line: the run's id and store (masked), and how to look at it."""
        shown = urls.mask_url(self.uri)
        state = "" if status == "FINISHED" else f" ({status.lower()})"
        head = f"mlflow: logged run {self.run_id}{state} to {shown}"
        if shown.lower().startswith(("http://", "https://")) and self.experiment_id:
            return f"{head}; open {shown.rstrip('/')}/#/experiments/{self.experiment_id}" \
                   f"/runs/{self.run_id}"
        return f"{head}; see it with: mlflow ui --backend-store-uri {shlex.quote(shown)}"

    def abort(self) -> None:
        """Mark the run FAILED after a failure of this logger (best effort)."""
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, "FAILED")
            self.run_id = None


def _interrupted(error: BaseException) -> bool:
    """Ctrl-C (trainer.Interrupted, by name: the trainer imports the settings, which import
    this module)."""
    names = {c.__name__ for c in type(error).__mro__}
    return "Interrupted" in names or "KeyboardInterrupt" in names


def _millis() -> int:
    import time

    return int(time.time() * 1000)


def _param_text(v: object) -> str:
    text = "none" if v is None else urls.mask_text(str(v))
    return text if len(text) <= 6000 else text[:5997] + "..."  # MLflow's limit on a value


LOGGERS: dict[str, Callable[[Any], Callback]] = {"tensorboard": TensorBoardLogger,
                                                 "mlflow": MlflowLogger}


# ---- the guard -----------------------------------------------------------------------------
class Guard(Callback):
    """Runs a tracker's events; its first error prints one warning line and switches it off."""

    def __init__(self, inner: Callback, name: str) -> None:
        self.inner, self.name, self.failed = inner, name, False

    def _call(self, event: str, ctx: FitContext | None, *args: object) -> None:
        if self.failed:
            return
        try:
            fn = getattr(self.inner, event, None)
            with getattr(self.inner, "limits", contextlib.nullcontext)():
                if fn is not None:
                    fn(*args if ctx is None else (ctx, *args))
        except Exception as exc:  # noqa: BLE001 - any tracker failure must not stop training
            self.failed = True
            msg = self._message(exc)
            if not getattr(exc, "repeat", False):  # said once per process is enough
                console.print(f"[yellow]warning: {msg}[/]", highlight=False)
            if ctx is not None:
                ctx.notes.append(msg)
            try:
                getattr(self.inner, "abort", lambda: None)()
            except Exception:  # noqa: BLE001, S110 - already warned once
                pass

    def _message(self, exc: Exception) -> str:
        """One line, its URLs masked (a store's error text may quote its password)."""
        first = urls.mask_text((str(exc).strip().splitlines() or [""])[0][:200])
        if isinstance(exc, TrackerUnavailable):
            return f"--track {self.name} is off: {first}; the run goes on without it"
        return (f"--track {self.name} stopped logging ({type(exc).__name__}: {first}); "
                "the run goes on and its folder is complete")

    def close(self) -> None:
        """Forwarded (the loop calls it after the last epoch and after errors)."""
        self._call("close", None)


def _forwarder(event: str) -> Callable[..., None]:
    def forward(self: Guard, ctx: FitContext, *args: object) -> None:
        self._call(event, ctx, *args)
    forward.__name__ = forward.__qualname__ = event
    forward.__doc__ = f"{event}, forwarded to the tracker (its first error switches it off)."
    return forward


# Every training event, forwarded: one defined on Callback reaches the trackers with no edit here.
for _event in [name for name in vars(Callback) if name.startswith("on_")]:
    setattr(Guard, _event, _forwarder(_event))


def tracking_callbacks(cfg: TrainConfig) -> list[Callback]:
    """A guarded tracker per name in cfg.track (rank 0 only); a missing package fails here,
    before any training, with the install command."""
    if not cfg.track or not distributed.is_main():
        return []
    return [Guard(LOGGERS[name](cfg), name) for name in cfg.track]
