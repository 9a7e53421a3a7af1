"""What a tracker's own viewer shows first, read back with its own reader: MLflow's experiment
kind, chart order, params and run description; TensorBoard's HParams list, through its real
hparams plugin; Optuna's objective name and intermediate values."""

from __future__ import annotations

import contextlib
import csv
import io as textio
import json
from pathlib import Path

import pytest
from conftest import write_pattern_npy

import cnnlab
from cnnlab.train import loggers

pytest.importorskip("tensorboard", reason="pip install -e '.[track]'")
pytest.importorskip("mlflow", reason="pip install -e '.[track]'")

from mlflow.tracking import MlflowClient  # noqa: E402

# Built-in digits, a tiny MLP, one thread; lr left unset: the optimizer's default (adamw 0.003).
TINY = {"model": "mlp", "model_args": {"hidden": 16}, "epochs": 2, "batch_size": 64,
        "num_threads": 1, "device": "cpu", "report": False}
# What TensorBoard's HParams tab used to open with: the first five settings by name.
BY_NAME = ["accumulate", "augment", "backbone_lr_mult", "batch_size", "calibrate"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run logged to both trackers, as a user runs it (verbose), its console kept."""
    runs = tmp_path_factory.mktemp("views") / "runs"
    err = textio.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        mp.setenv("CNNLAB_CACHE", str(runs.parent / "cache"))
        res = cnnlab.train(**TINY, track=["tensorboard", "mlflow"], runs_dir=str(runs),
                           name="views", verbose=True)
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cnnlab")
    (mlrun,) = client.search_runs([exp.experiment_id])
    return {"dir": res.run_dir, "runs": runs, "err": err.getvalue(), "client": client,
            "exp": exp, "run": mlrun, "metrics": json.loads((res.run_dir /
                                                             "metrics.json").read_text())}


@pytest.mark.slow  # a run and a new MLflow database: ~10 s on a busy machine
def test_mlflow_experiment_is_one_of_model_training_not_genai(run: dict) -> None:
    # MLflow 3 opens an experiment without this tag in its GenAI (traces/evaluations) view
    assert run["exp"].tags.get("mlflow.experimentKind") == "custom_model_development"
    # an experiment made before (untagged) is tagged; a kind its owner chose is kept
    client = run["client"]
    old = client.create_experiment("made-earlier")
    genai = client.create_experiment("theirs", tags={"mlflow.experimentKind":
                                                     "genai_development"})
    logger = loggers.MlflowLogger(_cfg(run["runs"]))
    logger.client = client
    assert logger._experiment("made-earlier") == old
    assert logger._experiment("theirs") == genai
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == \
        "custom_model_development"
    assert client.get_experiment(genai).tags["mlflow.experimentKind"] == "genai_development"


def _cfg(runs: Path) -> object:
    from cnnlab.settings import resolve

    return resolve({"track": "mlflow", "runs_dir": str(runs)})


@pytest.mark.slow
def test_mlflow_charts_lead_with_curves_and_the_final_scores_are_one_summary(run: dict) -> None:
    client, r = run["client"], run["run"]
    history = {k: client.get_metric_history(r.info.run_id, k) for k in r.data.metrics}
    # MLflow's run page: sections of "prefix/" metrics first, then the rest, each by name
    assert not [k for k in history if "/" in k or k.startswith("final")], sorted(history)
    order = sorted(history)
    assert all(len(history[k]) > 1 for k in order[:3]), order  # curves, not bars, lead
    single = {k for k, h in history.items() if len(h) == 1}
    assert single == {"test_acc", "test_loss"}  # a handful, named like the curves
    test = run["metrics"]["test"]
    assert r.data.metrics["test_acc"] == pytest.approx(test["accuracy"])
    assert r.data.metrics["test_loss"] == pytest.approx(test["loss"])
    # the per-epoch curves: x is the epoch, values those of metrics.csv
    rows = list(csv.DictReader(open(run["dir"] / "metrics.csv")))
    for key in ("train_loss", "val_loss", "val_acc"):
        assert [(m.step, m.value) for m in sorted(history[key], key=lambda m: m.step)] == \
            [(int(x["epoch"]), pytest.approx(float(x[key]), rel=1e-5)) for x in rows]
    # every final score, once, in the run's description (its page opens on it)
    note = r.data.tags["mlflow.note.content"]
    assert f"| test | {test['accuracy']:.4f} | {test['balanced_accuracy']:.4f} |" in note
    assert "| val |" in note and "| train |" in note
    assert f"best epoch {run['metrics']['best_epoch']}" in note


@pytest.mark.slow
def test_mlflow_params_are_the_values_that_ran(run: dict) -> None:
    p = run["run"].data.params
    assert p["lr"] == "0.003"  # not "none" beside resolved.lr
    assert p["device"] == "cpu" and p["world_size"] == "1"
    assert not [k for k in p if k.startswith("resolved.")]
    assert p["model"] == "mlp" and p["model_args.hidden"] == "16" and p["epochs"] == "2"


@pytest.mark.slow
def test_the_run_prints_where_mlflow_logged_it(run: dict) -> None:
    db = f"sqlite:///{run['runs'] / 'mlflow.db'}"
    lines = [x for x in run["err"].splitlines() if x.startswith("mlflow:")]
    assert lines == [f"mlflow: logged run {run['run'].info.run_id} to {db}; see it with: "
                     f"mlflow ui --backend-store-uri {db}"], run["err"]


def test_a_tracking_server_is_printed_as_its_run_page_with_the_password_masked() -> None:
    from cnnlab.settings import resolve

    cfg = resolve({"track": "mlflow", "track_uri": "http://ann:s3cret@127.0.0.1:5000"})
    logger = loggers.MlflowLogger(cfg)  # nothing is opened before the run starts
    logger.run_id, logger.experiment_id = "abc123", "7"
    line = logger.where()
    assert "s3cret" not in line
    assert line == ("mlflow: logged run abc123 to http://ann:***@127.0.0.1:5000; open "
                    "http://ann:***@127.0.0.1:5000/#/experiments/7/runs/abc123")


def _hparams_as_shown(logdir: Path) -> tuple[list[str], list[str]]:
    """The HParams tab's list of hyperparameters, and the ones it displays (the first five),
    as TensorBoard's own hparams plugin serves them to its page."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug import test, wrappers

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    ctx = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux,
                                data_provider=data_provider.MultiplexerDataProvider(
                                    mux, str(logdir)))
    app = hparams_plugin.HParamsPlugin(ctx).get_plugin_apps()["/experiment"]
    got = test.Client(app, wrappers.Response).post(
        "/experiment", data=json.dumps({"experimentName": ""}),
        content_type="application/json")
    assert got.status_code == 200
    infos = json.loads(got.get_data())["hparamInfos"]
    # the page: a stable sort by `differs` (first), then the first five are displayed
    shown = sorted(infos, key=lambda h: not h.get("differs", False))
    return [h["name"] for h in shown], [h["name"] for h in shown[:5]]


@pytest.mark.slow
def test_tensorboard_hparams_lead_with_the_key_settings(run: dict) -> None:
    names, displayed = _hparams_as_shown(run["dir"])
    key = {"model", "model_args.hidden", "lr", "optimizer", "batch_size", "epochs", "schedule",
           "augment", "weight_decay", "recipe"}
    assert set(names[:len(key)]) == key, names[:12]  # then the other settings
    assert set(displayed) <= key and not set(displayed) & (set(BY_NAME) - key), displayed
    assert {"model", "lr", "batch_size", "epochs"} <= set(displayed)
    assert "resolved.lr" not in names and len(names) > 60  # every setting is still there
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    ea = EventAccumulator(str(run["dir"]))
    ea.Reload()
    start = next(d.session_start_info for v in ea.PluginTagToContent("hparams").values()
                 if (d := plugin_data_pb2.HParamsPluginData.FromString(v)).HasField(
                     "session_start_info"))
    assert start.hparams["lr"].number_value == pytest.approx(0.003)  # the value that ran


# ---- Optuna --------------------------------------------------------------------------------
class _Trainer:
    """What TrialPruning reads of a trainer: the run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir


def _row(epoch: int, val_acc: float) -> dict:
    # val_loss falls as val_acc rises, as in a real run
    return {"epoch": epoch, "train_loss": 1.0, "val_loss": 1.0 - val_acc, "val_acc": val_acc}


def test_a_maximised_val_acc_study_gets_val_acc_per_epoch_and_prunes_the_lowest(
        tmp_path: Path) -> None:
    import optuna

    from cnnlab.experiments.search import TrialPruning

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(
        n_startup_trials=1, n_warmup_steps=0))

    def trial_of(accs: list[float]) -> optuna.trial.FrozenTrial:
        trial = study.ask()
        cb = TrialPruning(trial, "val_acc")
        try:
            for epoch, acc in enumerate(accs, 1):
                cb.on_epoch_end(_Trainer(tmp_path), _row(epoch, acc))
            study.tell(trial, accs[-1])
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return study.trials[-1]

    first = trial_of([0.6, 0.8])
    assert first.intermediate_values == {1: 0.6, 2: 0.8}  # the objective's own values
    assert trial_of([0.9, 0.95]).state.name == "COMPLETE"  # better: goes on
    worse = trial_of([0.1, 0.2])
    assert worse.state.name == "PRUNED" and worse.intermediate_values == {1: 0.1}
    assert json.loads((tmp_path / "pruned.json").read_text())["val_acc"] == 0.1


@pytest.mark.slow  # a 2-trial search
def test_search_names_its_objective_and_its_intermediate_values_are_the_metric(
        tmp_path: Path) -> None:
    import optuna

    from cnnlab.experiments.search import run_search
    from cnnlab.settings import TrainConfig

    data = write_pattern_npy(tmp_path / "pat", 40, test_every=None)
    base = TrainConfig(data=str(data), model="mlp", model_args={"hidden": 16}, epochs=2,
                       num_threads=1, report=False, extra={"plots": False})
    res = run_search(base, {"lr": {"type": "categorical", "choices": [1e-2, 3e-2]}},
                     out=tmp_path / "s", trials=2, pruner="none", verbose=False)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's/study.db'}")
    assert study.metric_names == ["val_acc"]
    assert study.user_attrs["intermediate_values"] == "val_acc"
    for t in study.trials:
        rows = list(csv.DictReader(open(Path(t.user_attrs["run_dir"]) / "metrics.csv")))
        assert t.intermediate_values == pytest.approx({int(x["epoch"]): float(x["val_acc"])
                                                       for x in rows}, rel=1e-5)
        assert all(0 < v <= 1 for v in t.intermediate_values.values())  # not -val_loss
    assert len(res.rows) == 2
