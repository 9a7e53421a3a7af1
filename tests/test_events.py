"""Callbacks see the run through a FitContext: a user callback can stop training, replace a
default callback by its name, and hear the events callbacks send each other."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.checkpoint import load_checkpoint
from cnnlab.run import callback_list
from cnnlab.settings import resolve
from cnnlab.train.callbacks import Checkpointer, EarlyStopping
from cnnlab.train.events import Callback, FitContext

MLP = {"model": "mlp", "model_args": {"hidden": 16}, "batch_size": 128, "num_threads": 1,
       "precision": "32", "report": False, "verbose": False}


class StopAt(Callback):
    """Asks the loop to stop once epoch `n` is done."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        if ctx.state.epoch == self.n:
            ctx.request_stop()


def test_request_stop_ends_training_after_that_epoch(tmp_path: Path) -> None:
    run = cnnlab.train(**MLP, epochs=6, out=str(tmp_path / "r"), callbacks=[StopAt(2)])
    assert [r["epoch"] for r in run.history] == [1, 2]
    assert run.stopped_early and run.metrics["epochs_run"] == 2
    assert run.metrics["stopped_early"] is True
    with open(tmp_path / "r" / "metrics.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert load_checkpoint(tmp_path / "r" / "last.pt")["train_state"]["epoch"] == 2


class FirstEpochIsBest(Callback):
    """A user's own rule for the best epoch, in place of the default early stopping."""

    name = "early_stopping"

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        if ctx.state.epoch == 1:
            ctx.mark_best(row)


def test_a_callback_named_like_a_default_one_replaces_it(tmp_path: Path) -> None:
    cfg = resolve({**{k: v for k, v in MLP.items() if k != "verbose"}, "epochs": 3})
    mine = FirstEpochIsBest()
    default = callback_list(cfg, False)
    cbs = callback_list(cfg, False, [mine])
    at = next(i for i, cb in enumerate(default) if isinstance(cb, EarlyStopping))
    assert cbs[at] is mine and len(cbs) == len(default)  # in its place, not appended
    assert not any(isinstance(cb, EarlyStopping) for cb in cbs)
    assert isinstance(cbs[at + 1], Checkpointer)  # so the checkpointer still hears on_best
    # a run with it: the default would pick a later epoch (the loss falls on digits)
    run = cnnlab.train(**MLP, epochs=3, keep_every=1, out=str(tmp_path / "r"), callbacks=[mine])
    assert run.best_epoch == 1 and run.metrics["best_epoch"] == 1
    assert min(run.history, key=lambda r: r["val_loss"])["epoch"] != 1
    best = load_checkpoint(tmp_path / "r" / "best.pt")["model_state"]
    first = load_checkpoint(tmp_path / "r" / "epoch_1.pt")["model_state"]
    assert all(torch.equal(best[k], first[k]) for k in best)
    assert run.metrics["val"]["loss"] == pytest.approx(run.history[0]["val_loss"], rel=1e-5)


class HearStepVal(Callback):
    """Collects the mid-epoch validations EvalEvery sends."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_step_val(self, ctx: FitContext, row: dict) -> None:
        self.rows.append(dict(row))


def test_eval_every_sends_its_numbers_as_an_event_that_fills_steps_csv(tmp_path: Path) -> None:
    hear = HearStepVal()
    cnnlab.train(**MLP, epochs=1, eval_every=4, out=str(tmp_path / "r"), callbacks=[hear])
    with open(tmp_path / "r" / "steps.csv") as fh:
        logged = [r for r in csv.DictReader(fh)]
    assert [r["step"] for r in hear.rows] == [int(r["step"]) for r in logged]
    assert len(hear.rows) >= 2
    for sent, row in zip(hear.rows, logged, strict=True):
        assert float(row["val_loss"]) == pytest.approx(sent["val_loss"], rel=1e-5)
        assert float(row["val_acc"]) == pytest.approx(sent["val_acc"], abs=1e-6)


class Probe(Callback):
    """Scores the test split after every epoch and tries to reach the Trainer's internals."""

    def __init__(self) -> None:
        self.test_acc: list[float] = []
        self.lr_of_group: list[float] = []
        self.reached: list[str] = []

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        probs, _ = ctx.score("test")
        self.test_acc.append(float((probs.argmax(1) == ctx.splits.test.labels.numpy()).mean()))
        self.lr_of_group.append(ctx.optimizer.param_groups[0]["lr"])
        for name in ("device", "features", "train_step", "loader"):
            if hasattr(ctx, name):
                self.reached.append(name)


def test_the_context_scores_a_split_and_hides_the_rest_of_the_trainer(tmp_path: Path) -> None:
    probe = Probe()
    run = cnnlab.train(**MLP, epochs=1, out=str(tmp_path / "r"), callbacks=[probe])
    assert probe.test_acc == [pytest.approx(run.metrics["test"]["accuracy"])]
    assert probe.lr_of_group[0] > 0
    assert probe.reached == []  # a narrow interface: no fallback to the Trainer's attributes
