"""The training recipe's switches, each shown by its effect: schedules and warmup (step by step
and across a resume), label smoothing, mixup/cutmix, weight averaging, gradient accumulation and
--recipe (plain = the loop as before, fast = its own defaults)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import cnnlab
from cnnlab.checkpoint import load_checkpoint
from cnnlab.data import load_data
from cnnlab.run import callback_list
from cnnlab.settings import SettingsError, TrainConfig, resolve
from cnnlab.train.callbacks import Callback
from cnnlab.train.events import FitContext
from cnnlab.train.mixing import BatchMixer, Mixed, batch_loss
from cnnlab.train.recipe import ema_decay
from cnnlab.train.trainer import Trainer

MLP = {"model": "mlp", "model_args": {"hidden": 32, "layers": 1}, "report": False,
       "num_threads": 1, "precision": "32"}


@pytest.fixture(scope="module")
def digits():  # noqa: ANN201
    return load_data(None)


class Record(Callback):
    """The learning rate, momentum and weights after every step, read from the FitContext."""

    def __init__(self, weights: bool = False) -> None:
        self.lrs: list[float] = []
        self.moms: list[float] = []  # SGD's momentum or Adam's beta1 of each step
        self.weights: list[dict] = []
        self.keep = weights

    def on_step_end(self, ctx: FitContext, loss: float) -> None:
        self.lrs.append(ctx.current_lr())
        g = ctx.optimizer.param_groups[0]
        self.moms.append(g["betas"][0] if "betas" in g else g["momentum"])
        if self.keep:
            self.weights.append({k: v.detach().clone()
                                 for k, v in ctx.model.state_dict().items()})


def _trainer(cfg: TrainConfig, splits: object, out: Path, *extra: Callback,
             resume: bool = False) -> Trainer:
    """A Trainer with a run's callbacks (run.callback_list) and `extra` after them."""
    return Trainer(cfg, splits, out, resume=resume, verbose=False,
                   callbacks=callback_list(cfg, False, list(extra)))


def _cfg(tmp: Path, **kw: object) -> TrainConfig:
    return resolve({**MLP, "out": str(tmp), "seed": 1, **kw})


# ---- schedules ---------------------------------------------------------------------------

def _onecycle(t: int, n: int) -> float:
    up = round(0.3 * n)
    if t < up:
        return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * t / up)) / 2
    return 1 / 25e4 + (1 - 1 / 25e4) * (1 + math.cos(math.pi * (t - up) / (n - up))) / 2


def _momentum(t: int, n: int) -> float:
    # torch's OneCycleLR / fastai: 0.95 -> 0.85 while the rate climbs, back to 0.95 after
    up = round(0.3 * n)
    if t < up:
        return 0.85 + 0.10 * (1 + math.cos(math.pi * t / up)) / 2
    return 0.95 - 0.10 * (1 + math.cos(math.pi * (t - up) / (n - up))) / 2


def test_warmup_then_onecycle_follow_their_formulas_and_survive_a_resume(digits, tmp_path):
    kw = dict(epochs=4, batch_size=200, lr=0.01, schedule="onecycle", warmup=5)
    whole = Record()
    t = _trainer(_cfg(tmp_path / "a", **kw), digits, tmp_path / "a", whole)
    t.fit()
    total = 4 * t.steps_per_epoch
    expected = [0.01 * ((s + 1) / 5 if s < 5 else _onecycle(s - 5, total - 5))
                for s in range(total)]
    assert whole.lrs == pytest.approx(expected, rel=1e-12)
    assert max(whole.lrs) == pytest.approx(0.01, rel=1e-3)  # the peak is the given rate
    # Adam's beta1 mirrors the rate: 0.95 in the warmup, lowest at the peak rate
    moms = [0.95 if s < 5 else _momentum(s - 5, total - 5) for s in range(total)]
    assert whole.moms == pytest.approx(moms, rel=1e-12)
    assert min(whole.moms) == pytest.approx(0.85) and whole.moms[-1] > 0.94
    after = whole.lrs[5:]  # the one-cycle part, after the warmup
    assert whole.moms.index(min(whole.moms)) == 5 + after.index(max(after))
    # stopped after 2 epochs and resumed: the same rates and momenta, step by step
    first, second = Record(), Record()
    _trainer(_cfg(tmp_path / "b", **kw), digits, tmp_path / "b", first).fit(stop_after=2)
    _trainer(_cfg(tmp_path / "b", **kw), digits, tmp_path / "b", second, resume=True).fit()
    assert first.lrs + second.lrs == whole.lrs
    assert first.moms + second.moms == whole.moms


def test_onecycle_cycles_sgd_momentum_unless_switched_off(digits, tmp_path):
    kw = dict(epochs=2, batch_size=300, lr=0.05, schedule="onecycle", optimizer="sgd",
              momentum=0.9)
    on, off = Record(), Record()
    t = _trainer(_cfg(tmp_path / "on", **kw), digits, tmp_path / "on", on)
    t.fit()
    total = 2 * t.steps_per_epoch
    assert on.moms == pytest.approx([_momentum(s, total) for s in range(total)], rel=1e-12)
    _trainer(_cfg(tmp_path / "off", **kw, cycle_momentum=False), digits, tmp_path / "off",
             off).fit()
    assert set(off.moms) == {0.9} and off.lrs == on.lrs


def test_warmup_fraction_step_and_multistep(digits, tmp_path):
    rec = Record()
    t = _trainer(_cfg(tmp_path, epochs=6, batch_size=300, lr=0.1, schedule="multistep",
                      lr_milestones=[2, 4], lr_gamma=0.5, warmup=0.25), digits, tmp_path, rec)
    t.fit()
    spe, total = t.steps_per_epoch, 6 * t.steps_per_epoch
    w = round(0.25 * total)
    exp = [0.1 * ((s + 1) / w if s < w else 0.5 ** (((s - w) >= 2 * spe) + ((s - w) >= 4 * spe)))
           for s in range(total)]
    assert rec.lrs == pytest.approx(exp, rel=1e-12)
    rec = Record()
    _trainer(_cfg(tmp_path / "s", epochs=4, batch_size=300, lr=0.1, schedule="step", lr_step=1,
                  lr_gamma=0.1), digits, tmp_path / "s", rec).fit()
    assert rec.lrs == pytest.approx([0.1 * 0.1 ** (s // spe) for s in range(4 * spe)])


def test_plateau_drops_the_rate_and_resumes_its_state(digits, tmp_path):
    # sgd at a rate so high that the validation loss stops falling at once
    kw = dict(epochs=6, batch_size=300, lr=3.0, optimizer="sgd", schedule="plateau",
              lr_patience=1, lr_gamma=0.5)
    rec = Record()
    t = _trainer(_cfg(tmp_path / "a", **kw), digits, tmp_path / "a", rec)
    t.fit()
    spe = t.steps_per_epoch
    per_epoch = [rec.lrs[e * spe] for e in range(6)]
    losses = [r["val_loss"] for r in t.state.history]
    scale, best, bad, exp = 1.0, math.inf, 0, []
    for loss in losses:  # the rule, replayed on the logged validation losses
        exp.append(3.0 * scale)
        if loss < best:
            best, bad = loss, 0
        else:
            bad += 1
            if bad >= 1:
                scale, bad = scale * 0.5, 0
    assert per_epoch == pytest.approx(exp) and min(per_epoch) < 3.0
    first, second = Record(), Record()
    _trainer(_cfg(tmp_path / "b", **kw), digits, tmp_path / "b", first).fit(stop_after=3)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["callback_state"]["plateau"]["scale"] \
        == pytest.approx(exp[3] / 3.0)
    _trainer(_cfg(tmp_path / "b", **kw), digits, tmp_path / "b", second, resume=True).fit()
    assert first.lrs + second.lrs == rec.lrs


# ---- losses and targets ---------------------------------------------------------------------

def test_label_smoothing_gives_the_closed_form_loss(digits, tmp_path):
    t = Trainer(_cfg(tmp_path, epochs=1, label_smoothing=0.2), digits, tmp_path, verbose=False)
    x, y, idx = next(t.batches(0))
    with torch.no_grad():
        logp = F.log_softmax(t.model(x).float(), 1)
    k = logp.shape[1]
    # (1 - eps) * NLL of the label + eps * the mean NLL over all classes
    closed = ((1 - 0.2) * -logp[torch.arange(len(y)), y] + 0.2 * -logp.sum(1) / k).mean()
    loss, _ = t.train_step(x, y, idx)
    assert float(loss) == pytest.approx(float(closed), rel=1e-5)
    assert float(loss) != pytest.approx(float(F.nll_loss(logp, y)), rel=1e-4)  # not plain CE


def test_mixed_batch_loss_is_the_mixture_of_both_losses():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    m = Mixed(y, y.flip(0), 0.3)
    assert float(batch_loss(logits, m)) == pytest.approx(
        0.3 * float(F.cross_entropy(logits, y)) + 0.7 * float(F.cross_entropy(logits, y.flip(0))))
    assert torch.equal(m.dominant, y.flip(0))


def test_mixup_with_alpha_near_zero_equals_no_mixup(digits, tmp_path):
    hist = {}
    for name, kw in {"none": {}, "tiny": {"mixup": 1e-6}, "full": {"mixup": 1.0}}.items():
        t = Trainer(_cfg(tmp_path / name, epochs=2, batch_size=100, lr=0.01, **kw), digits,
                    tmp_path / name, verbose=False)
        t.fit()
        hist[name] = [r["val_loss"] for r in t.state.history]
    assert hist["tiny"] == pytest.approx(hist["none"], rel=1e-4)
    assert hist["full"][-1] != pytest.approx(hist["none"][-1], rel=1e-3)


def test_cutmix_pastes_a_box_and_weights_by_its_area():
    x = torch.zeros(4, 1, 10, 10)
    x[2:] = 1.0
    mixer = BatchMixer(0.0, 1.0, 1.0, 0, 5, seed=0)
    out, t = mixer(x, torch.tensor([0, 0, 1, 1]), epoch=0, step=0)
    pasted = float(out[0].mean())  # image 0 is all zeros; its partner (image 3) all ones
    assert isinstance(t, Mixed) and t.lam == pytest.approx(1 - pasted)
    assert 0 < pasted < 1
    # switched off for the last epoch; the draws depend on (seed, epoch, step) only
    same, _ = mixer(x, torch.tensor([0, 0, 1, 1]), epoch=0, step=0)
    assert torch.equal(same, out)
    off, y = BatchMixer(0.0, 1.0, 1.0, 1, 5, seed=0)(x, torch.tensor([0, 0, 1, 1]), 4, 0)
    assert off is x and not isinstance(y, Mixed)


# ---- weight averaging ----------------------------------------------------------------------

def test_ema_weights_equal_the_closed_form(digits, tmp_path):
    rec = Record(weights=True)
    t = _trainer(_cfg(tmp_path, epochs=1, batch_size=200, ema=0.9), digits, tmp_path, rec)
    w0 = {k: v.detach().clone() for k, v in t.model.state_dict().items()}
    t.fit()
    k = len(rec.weights)
    ds = [ema_decay(0.9, i) for i in range(1, k + 1)]
    # avg_k = prod(d) * w0 + sum_i (1 - d_i) * prod_{j > i} d_j * w_i
    ckpt = load_checkpoint(tmp_path / "last.pt")
    for name, v0 in w0.items():
        exp = math.prod(ds) * v0
        for i in range(k):
            exp = exp + (1 - ds[i]) * math.prod(ds[i + 1:]) * rec.weights[i][name]
        assert torch.allclose(ckpt["model_state"][name], exp, atol=1e-6), name
        assert torch.allclose(ckpt["callback_state"]["ema"]["raw"][name], rec.weights[-1][name])
    # validation used the averaged weights
    probs, loss = t.evaluate_split("val")
    assert loss == pytest.approx(t.state.history[-1]["val_loss"], rel=1e-6)


def test_ema_resume_equals_uninterrupted_and_best_pt_is_averaged(digits, tmp_path):
    kw = dict(epochs=3, batch_size=128, lr=0.01, ema=0.95, seed=2)
    a = Trainer(_cfg(tmp_path / "a", **kw), digits, tmp_path / "a", verbose=False)
    a.fit()
    Trainer(_cfg(tmp_path / "b", **kw), digits, tmp_path / "b", verbose=False).fit(stop_after=1)
    b = Trainer(_cfg(tmp_path / "b", **kw), digits, tmp_path / "b", resume=True, verbose=False)
    b.fit()
    assert [r["val_loss"] for r in a.state.history] == [r["val_loss"] for r in b.state.history]
    sa, sb = (load_checkpoint(p / "last.pt")["model_state"] for p in (tmp_path / "a",
                                                                      tmp_path / "b"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the final metrics score best.pt: the averaged weights of the best epoch
    run = cnnlab.train(**kw, **MLP, out=str(tmp_path / "c"), verbose=False)
    assert run.metrics["val"]["loss"] == pytest.approx(
        run.history[run.best_epoch - 1]["val_loss"], rel=1e-5)


# ---- gradient accumulation ------------------------------------------------------------------

def test_accumulate_4_at_batch_16_equals_batch_64(digits, tmp_path):
    runs = {}
    for name, kw in {"big": dict(batch_size=64), "acc": dict(batch_size=16, accumulate=4)}.items():
        t = Trainer(_cfg(tmp_path / name, epochs=2, lr=0.01, optimizer="sgd", **kw), digits,
                    tmp_path / name, verbose=False)
        t.fit()
        runs[name] = t
    assert runs["acc"].steps_per_epoch == runs["big"].steps_per_epoch
    for (k, a), b in zip(runs["big"].model.state_dict().items(),
                         runs["acc"].model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), k
    assert runs["acc"].state.history[-1]["train_loss"] == pytest.approx(
        runs["big"].state.history[-1]["train_loss"], rel=1e-5)


# ---- recipes ---------------------------------------------------------------------------------

def test_recipe_fills_only_what_was_not_given():
    fast = resolve({"recipe": "fast"})
    assert (fast.schedule, fast.label_smoothing, fast.ema, fast.monitor) == \
        ("onecycle", 0.1, 0.99, "last")
    mine = resolve({"recipe": "fast", "schedule": "cosine", "ema": None})
    assert (mine.schedule, mine.label_smoothing, mine.ema) == ("cosine", 0.1, None)
    plain = resolve({"recipe": "plain"})
    assert (plain.schedule, plain.label_smoothing, plain.ema, plain.accumulate) == \
        ("cosine", 0.0, None, 1)
    with pytest.raises(SettingsError, match="--recipe 'fats': choose"):
        resolve({"recipe": "fats"})


def test_plain_recipe_is_the_loop_with_every_switch_off(tmp_path):
    kw = dict(epochs=2, batch_size=128, seed=4, augment="crop=1", class_weights="auto")
    plain = cnnlab.train(**kw, **MLP, recipe="plain", out=str(tmp_path / "p"), verbose=False)
    off = cnnlab.train(**kw, **MLP, recipe="plain", schedule="cosine", warmup=0,
                       label_smoothing=0, mixup=0, cutmix=0, ema=None, accumulate=1,
                       out=str(tmp_path / "o"), verbose=False)
    assert plain.history == [{**r, "time_s": p["time_s"]}
                             for r, p in zip(off.history, plain.history, strict=True)]
    assert plain.metrics["test"]["accuracy"] == off.metrics["test"]["accuracy"]


def test_a_grid_over_recipe_applies_each_recipes_values_but_keeps_what_was_given():
    from cnnlab.experiments.common import apply_point

    base = resolve({**MLP, "label_smoothing": 0.05})
    fast = apply_point(base, {"recipe": "fast"})
    assert (fast.recipe, fast.schedule, fast.ema, fast.label_smoothing) == \
        ("fast", "onecycle", 0.99, 0.05)  # label smoothing was given: it stays
    back = apply_point(fast, {"recipe": "plain"})
    assert (back.schedule, back.ema, back.label_smoothing) == ("cosine", None, 0.05)
    # the point's own values win over the recipe's, whatever their order in the point
    mine = apply_point(base, {"ema": 0.9, "recipe": "fast"})
    assert (mine.schedule, mine.ema) == ("onecycle", 0.9)
    with pytest.raises(SettingsError, match="--recipe 'fats'"):
        apply_point(base, {"recipe": "fats"})


@pytest.mark.slow
def test_sweep_over_recipe_trains_each_member_with_its_recipe(digits, tmp_path):
    from cnnlab.experiments import run_sweep

    base = resolve({**MLP, "epochs": 1, "batch_size": 256})
    res = run_sweep(base, {"recipe": ["plain", "fast"]}, splits=digits, out=tmp_path / "s",
                    verbose=False)
    cfgs = {m.name: yaml.safe_load((m.run_dir / "config.yaml").read_text())
            for m in res.members}
    assert (cfgs["recipe=fast"]["schedule"], cfgs["recipe=fast"]["ema"]) == ("onecycle", 0.99)
    assert (cfgs["recipe=plain"]["schedule"], cfgs["recipe=plain"]["ema"]) == ("cosine", None)
    fast = next(m for m in res.members if m.name == "recipe=fast")
    # 5 steps: the recipe's data rule turns the average off (train/autorecipe.py)
    assert cfgs["recipe=fast"]["resolved"]["recipe"]["ema"] is None
    assert "ema" not in load_checkpoint(fast.run_dir / "last.pt")["callback_state"]
    assert "recipe" not in cfgs["recipe=plain"]["resolved"]


def test_recipe_reaches_the_estimator(tmp_path):
    from conftest import digits_arrays

    from cnnlab.estimator import ImageClassifier

    x, y = digits_arrays(120)
    est = ImageClassifier(recipe="fast", model="mlp", epochs=1, out=str(tmp_path / "e"),
                          num_threads=1).fit(x, y)
    cfg = yaml.safe_load((est.run_dir_ / "config.yaml").read_text())
    assert (cfg["schedule"], cfg["label_smoothing"], cfg["ema"]) == ("onecycle", 0.1, 0.99)
    # the recipe chose the rest from the data: its own lr, and no average over 2 steps
    assert cfg["resolved"]["recipe"]["lr"] == cfg["resolved"]["lr"]
    assert cfg["resolved"]["recipe"]["ema"] is None
    assert "ema" not in load_checkpoint(est.run_dir_ / "last.pt")["callback_state"]


@pytest.mark.slow
def test_recipe_from_the_cli_keeps_what_was_given(tmp_path):
    from clitools import run_cli

    res = run_cli("train", "--recipe", "fast", "--schedule", "cosine", "--model", "mlp",
                  "--epochs", "1", "--no-report", "--out", tmp_path / "c", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())
    assert (cfg["recipe"], cfg["schedule"], cfg["ema"]) == ("fast", "cosine", 0.99)


# ---- --monitor ------------------------------------------------------------------------------

def test_monitor_val_acc_ranks_by_accuracy_and_breaks_ties_by_loss():
    from types import SimpleNamespace

    from cnnlab.train.callbacks import EarlyStopping
    from cnnlab.train.events import FitContext
    from cnnlab.train.trainer import TrainState

    rows = [(0.50, 0.90), (0.40, 0.92), (0.45, 0.95), (0.30, 0.95), (0.35, 0.95), (0.20, 0.94)]
    best = {}
    for monitor in ("val_acc", "val_loss", "last"):
        cb = EarlyStopping(patience=2, monitor=monitor)
        ctx = FitContext(SimpleNamespace(state=TrainState()), [cb])
        for epoch, (loss, acc) in enumerate(rows, 1):
            ctx.state.epoch = epoch
            cb.on_epoch_end(ctx, {"epoch": epoch, "val_loss": loss, "val_acc": acc,
                                  "train_loss": 1.0})
        best[monitor] = (ctx.state.best_epoch, ctx.state.stopped_early)
    # val_acc: 0.95 first at epoch 3, at a lower loss at epoch 4, not lower at epoch 5; the
    # patience of 2 then runs out at epoch 6
    assert best["val_acc"] == (4, True)
    assert best["val_loss"] == (6, False)
    assert best["last"] == (6, False)  # --recipe fast's: the annealed final weights


@pytest.mark.slow
def test_monitor_val_acc_keeps_and_scores_the_most_accurate_epoch(tmp_path):
    kw = dict(**MLP, epochs=6, batch_size=64, lr=0.01, label_smoothing=0.2, seed=3,
              verbose=False)
    by = {m: cnnlab.train(**kw, monitor=m, out=str(tmp_path / m)) for m in ("val_acc",
                                                                           "val_loss")}
    h = by["val_acc"].history
    assert h == [{**r, "time_s": a["time_s"]} for r, a in
                 zip(by["val_loss"].history, h, strict=True)]  # the same training
    top = max(h, key=lambda r: (r["val_acc"], -r["val_loss"]))
    low = min(h, key=lambda r: r["val_loss"])
    assert top["epoch"] != low["epoch"]  # the two rules disagree here, so the test can tell
    assert by["val_acc"].best_epoch == top["epoch"]
    assert by["val_loss"].best_epoch == low["epoch"]
    # the final scores are best.pt's, and best.pt holds that epoch's weights
    for m, row in (("val_acc", top), ("val_loss", low)):
        assert by[m].metrics["best_epoch"] == row["epoch"]
        assert by[m].metrics["val"]["accuracy"] == pytest.approx(row["val_acc"], abs=1e-6)
        assert by[m].metrics["val"]["loss"] == pytest.approx(row["val_loss"], rel=1e-5)


def test_step_validation_scores_the_averaged_weights_like_the_epoch_line(digits, tmp_path):
    """--ema with --eval-every: the step curve ends where the epoch line does (both score the
    averaged weights), and training still continues from the trained weights."""
    import csv

    from cnnlab.run import run_training

    n_train = len(load_data(None).train)
    per_epoch = -(-n_train // 128)
    cfg = _cfg(tmp_path / "r", epochs=2, batch_size=128, lr=0.01, ema=0.9,
               eval_every=per_epoch, report=False)
    run_training(cfg, splits=digits, verbose=False)
    steps = {int(r["step"]): r for r in csv.DictReader(open(tmp_path / "r" / "steps.csv"))
             if r.get("val_acc")}
    epochs = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    for i, row in enumerate(epochs, start=1):
        at = steps[i * per_epoch]
        assert float(at["val_acc"]) == pytest.approx(float(row["val_acc"]), abs=1e-9)
        assert float(at["val_loss"]) == pytest.approx(float(row["val_loss"]), rel=1e-5)
