"""--track: TensorBoard and MLflow read back what a run logged, with their own readers; a
tracker that fails never costs the run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import cnnlab
from cnnlab import io
from cnnlab.errors import CnnlabError

pytest.importorskip("tensorboard", reason="pip install -e '.[track]'")
pytest.importorskip("mlflow", reason="pip install -e '.[track]'")

from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

# Built-in digits, a tiny MLP, one thread: a run takes about a second.
TINY = {"model": "mlp", "model_args": {"hidden": 16}, "epochs": 2, "batch_size": 64,
        "num_threads": 1, "device": "cpu", "verbose": False}


def _steps(run_dir: Path) -> int:
    return int(io.read_csv(run_dir / "metrics.csv")[-1]["step"])


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run logged to both trackers at once (report included, so it is uploaded)."""
    runs = tmp_path_factory.mktemp("track") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(runs.parent / "cache"))
        res = cnnlab.train(**TINY, track=["tensorboard", "mlflow"], runs_dir=str(runs),
                           name="both")
    return res.run_dir


def _events(run_dir: Path) -> EventAccumulator:
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    return ea


@pytest.mark.slow  # a report and a new MLflow database: ~10 s on a busy machine
def test_tensorboard_event_reader_reads_back_steps_epochs_final_scores_and_figures(
        tracked: Path) -> None:
    history = io.read_csv(tracked / "metrics.csv")
    metrics = json.loads((tracked / "metrics.json").read_text())
    ea = _events(tracked)
    # one point per epoch, at the epoch's last global step, equal to metrics.csv
    val = ea.Scalars("loss/val")
    assert [e.step for e in val] == [int(r["step"]) for r in history]
    assert [e.value for e in val] == pytest.approx([float(r["val_loss"]) for r in history],
                                                   rel=1e-5)
    assert [e.value for e in ea.Scalars("accuracy/train")] == \
        pytest.approx([float(r["train_acc"]) for r in history], rel=1e-5)
    # every optimization step: loss and the scheduled learning rate (cosine: it falls)
    steps = ea.Scalars("step/loss")
    assert [e.step for e in steps] == list(range(1, _steps(tracked) + 1))
    lrs = [e.value for e in ea.Scalars("step/lr")]
    assert len(lrs) == len(steps) and lrs[-1] < lrs[0]
    assert ea.Scalars("final/test_accuracy")[-1].value == \
        pytest.approx(metrics["test"]["accuracy"])
    # the run's figures (failures included: the report drew them) as images
    images = set(ea.Tags()["images"])
    assert {"plots/curves", "plots/confusion_matrix", "plots/failures"} <= images
    img = ea.Images("plots/curves")[-1]
    assert img.width > 200 and img.height > 100
    # the HParams tab: the settings of this run, and the final scores as its metrics
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = ea.PluginTagToContent("hparams")
    session = next(plugin_data_pb2.HParamsPluginData.FromString(v).session_start_info
                   for v in content.values()
                   if plugin_data_pb2.HParamsPluginData.FromString(v).HasField(
                       "session_start_info"))
    assert session.hparams["model"].string_value == "mlp"
    assert session.hparams["model_args.hidden"].number_value == 16
    assert session.hparams["lr"].number_value == pytest.approx(0.003)  # the value that ran


@pytest.mark.slow  # a report and a new MLflow database: ~10 s on a busy machine
def test_mlflow_client_reads_back_params_metric_history_and_artifacts(tracked: Path,
                                                                      tmp_path: Path) -> None:
    db = tracked.parent / "mlflow.db"
    assert db.is_file()  # the default store: <runs_dir>/mlflow.db
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("cnnlab")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "both"
    assert run.data.tags["cnnlab.run_dir"] == str(tracked.resolve())
    p = run.data.params
    assert p["model"] == "mlp" and p["epochs"] == "2" and p["batch_size"] == "64"
    assert p["model_args.hidden"] == "16" and float(p["lr"]) == pytest.approx(0.003)
    history = io.read_csv(tracked / "metrics.csv")
    val = client.get_metric_history(run.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in sorted(val, key=lambda m: m.step)] == \
        [(int(r["epoch"]), pytest.approx(float(r["val_acc"]), rel=1e-5)) for r in history]
    step_loss = client.get_metric_history(run.info.run_id, "step_loss")
    assert sorted(m.step for m in step_loss) == list(range(1, _steps(tracked) + 1))
    metrics = json.loads((tracked / "metrics.json").read_text())
    assert run.data.metrics["test_acc"] == pytest.approx(metrics["test"]["accuracy"])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "metrics.json", "best.pt", "config.yaml", "plots"} <= names
    assert "plots/curves.png" in {a.path for a in client.list_artifacts(run.info.run_id,
                                                                        "plots")}
    # the artifacts sit next to the database, and are the run folder's files
    got = Path(client.download_artifacts(run.info.run_id, "best.pt", str(tmp_path)))
    assert got.read_bytes() == (tracked / "best.pt").read_bytes()
    assert (tracked.parent / "mlartifacts").is_dir()


@pytest.mark.slow  # a report and a new MLflow database: ~10 s on a busy machine
def test_a_tracker_failing_mid_run_warns_once_and_the_run_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from torch.utils.tensorboard import SummaryWriter

    calls = {"n": 0}
    real = SummaryWriter.add_scalar

    def flaky(self, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > 5:  # a disk that fills up after the first few steps
            raise OSError(28, "No space left on device")
        return real(self, *args, **kw)

    monkeypatch.setattr(SummaryWriter, "add_scalar", flaky)
    runs = tmp_path / "runs"
    res = cnnlab.train(**TINY, track="tensorboard,mlflow", runs_dir=str(runs), name="flaky",
                       report=False)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "--track tensorboard stopped" in line]
    assert len(warnings) == 1 and "No space left on device" in warnings[0], err
    assert calls["n"] == 6  # switched off after its first failure
    assert len(res.history) == 2 and (res.run_dir / "metrics.json").is_file()
    assert any("--track tensorboard stopped" in n for n in res.metrics.get("notes", []))
    # the other tracker was not affected
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cnnlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2


def test_an_unusable_mlflow_store_warns_and_trains(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = cnnlab.train(**TINY, track="mlflow", track_uri=f"sqlite:///{blocker}/sub/x.db",
                       out=str(tmp_path / "run"), report=False)
    err = capsys.readouterr().err
    assert sum("--track mlflow is off: cannot create" in x for x in err.splitlines()) == 1, err
    assert (res.run_dir / "best.pt").is_file() and res.metrics["test"]["accuracy"] > 0.3


def test_a_missing_tracker_package_fails_before_training_with_the_install_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(CnnlabError, match=r"pip install -e '\.\[track\]'"):
        cnnlab.train(**TINY, track="mlflow", out=str(tmp_path / "run"), report=False)
    assert not (tmp_path / "run").exists()  # nothing was trained, nothing left behind


@pytest.mark.slow  # two runs and a new MLflow database
def test_a_resumed_run_continues_its_mlflow_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = cnnlab.train(**{**TINY, "epochs": 1}, track="mlflow", runs_dir=str(runs),
                         name="r", report=False)
    cnnlab.train(epochs=2, out=str(first.run_dir), resume=True, verbose=False)
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cnnlab").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["cnnlab.resumed_at_step"] == "17"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss")) == \
        [1, 2]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "step_loss")) == \
        list(range(1, 35))


def test_track_names_are_checked() -> None:
    from cnnlab.settings import SettingsError, resolve

    assert resolve({"track": "TensorBoard, mlflow,mlflow"}).track == ["tensorboard", "mlflow"]
    with pytest.raises(SettingsError, match="did you mean 'tensorboard'"):
        resolve({"track": "tensorbord"})


@pytest.mark.slow  # two runs and a new MLflow database
def test_sweep_members_log_to_one_mlflow_experiment_named_after_the_sweep(tmp_path: Path) -> None:
    from cnnlab.experiments import run_sweep
    from cnnlab.settings import resolve

    runs = tmp_path / "runs"
    base = resolve({k: v for k, v in TINY.items() if k != "verbose"} |
                   {"track": "mlflow", "runs_dir": str(runs), "report": False})
    run_sweep(base, {"lr": [1e-3, 1e-2]}, out=runs / "sweep-x", verbose=False)
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("sweep-x").experiment_id])
    assert sorted(r.info.run_name for r in found) == ["lr=0.001", "lr=0.01"]
    assert sorted(r.data.params["lr"] for r in found) == ["0.001", "0.01"]
    assert all(r.info.status == "FINISHED" for r in found)


def test_experiment_commands_offer_the_tracking_options() -> None:
    from typer.main import get_command

    from cnnlab.cli.app import app

    cmd = get_command(app)
    for name in ("train", "sweep", "cv", "seeds", "transfer"):
        opts = {o for p in cmd.commands[name].params for o in p.opts}
        assert {"--track", "--track-uri"} <= opts, name
    assert "--track" not in {o for p in cmd.commands["lr-find"].params for o in p.opts}


@pytest.mark.slow  # two runs and a new MLflow database
def test_a_run_that_fails_or_is_interrupted_closes_its_mlflow_run_as_such(tmp_path: Path) -> None:
    from cnnlab.train.callbacks import Callback

    class Stop(Callback):
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def on_epoch_end(self, trainer: object, row: dict) -> None:
            raise self.exc

    runs = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        cnnlab.train(**TINY, track="mlflow", runs_dir=str(runs), name="stopped", report=False,
                     callbacks=[Stop(KeyboardInterrupt())])
    with pytest.raises(RuntimeError, match="boom"):
        cnnlab.train(**TINY, track="mlflow", runs_dir=str(runs), name="broken", report=False,
                     callbacks=[Stop(RuntimeError("boom"))])
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("cnnlab").experiment_id])
    status = {r.info.run_name: r.info.status for r in found}
    assert status == {"stopped": "KILLED", "broken": "FAILED"}
    # what was logged before the stop is kept: the first epoch's steps
    run = next(r for r in found if r.info.run_name == "stopped")
    assert len(client.get_metric_history(run.info.run_id, "step_loss")) == 17


@pytest.mark.slow  # two trackers and a report: ~10 s on a busy machine
def test_mid_epoch_validations_reach_both_trackers(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # --eval-every N validates every N steps (steps.csv); TensorBoard and MLflow get the same
    # points, at the same steps, through the guarded tracker's on_step_val.
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    res = cnnlab.train(**TINY, eval_every=7, track=["tensorboard", "mlflow"],
                       runs_dir=str(tmp_path / "runs"), name="steps", report=False)
    rows = [r for r in io.read_csv(res.run_dir / "steps.csv") if r.get("val_loss")]
    assert len(rows) >= 2
    want = [(int(r["step"]), pytest.approx(float(r["val_loss"]), rel=1e-5)) for r in rows]
    ea = _events(res.run_dir)
    assert [(e.step, e.value) for e in ea.Scalars("step/val_loss")] == want
    assert len(ea.Scalars("step/val_acc")) == len(rows)
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cnnlab").experiment_id])
    got = client.get_metric_history(run.info.run_id, "step_val_loss")
    assert [(m.step, m.value) for m in sorted(got, key=lambda m: m.step)] == want
