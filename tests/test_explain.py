"""Explanations: Grad-CAM on a known signal, failure picks, robustness probes, explain CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, write_corner_folder
from PIL import Image

import cnnlab
from cnnlab.cli import main as cli_main
from cnnlab.errors import CnnlabError, DataError
from cnnlab.evaluate.failures import find_failures
from cnnlab.evaluate.gradcam import gradcam, pick_items, resolve_layer
from cnnlab.evaluate.robustness import (
    Perturbation,
    add_noise,
    default_perturbations,
    image_range,
    perturb,
    robustness_table,
    rotate,
)
from cnnlab.models import Classifier, build_model

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only

SIZE, SQUARE = 32, 8
QUADRANTS = [(0, 0), (SIZE // 2, 0), (0, SIZE // 2), (SIZE // 2, SIZE // 2)]


@pytest.fixture(scope="module")
def corner_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small CNN trained on the corner-square set (class = side of the bright square)."""
    root = tmp_path_factory.mktemp("corner")
    data = write_corner_folder(root / "data", (100, 100), SIZE, SQUARE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(root / "cache"))
        run = cnnlab.train(data=data, model="cnn", epochs=4, image_size=SIZE, channels=1,
                           model_args={"width": 8}, out=str(root / "run"), report=False,
                           verbose=False, seed=0, device="cpu")
        test = cnnlab.data(data, image_size=SIZE, channels=1).test
    return {"data": data, "run": run, "model": run.model, "test": test, "root": root}


def _square_masks(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the square's pixels, the 16x16 quadrant holding it) of one [H,W] corner image."""
    square = np.zeros(img.shape, bool)
    quadrant = np.zeros(img.shape, bool)
    far = SIZE - SQUARE
    for r, c in [(0, 0), (far, 0), (0, far), (far, far)]:
        if (img[r:r + SQUARE, c:c + SQUARE] == 255).all():
            square[r:r + SQUARE, c:c + SQUARE] = True
            qr, qc = (0 if r == 0 else SIZE // 2), (0 if c == 0 else SIZE // 2)
            quadrant[qr:qr + SIZE // 2, qc:qc + SIZE // 2] = True
    assert square.sum() == SQUARE * SQUARE
    return square, quadrant


def test_gradcam_heat_is_on_the_bright_square(corner_run: dict) -> None:
    model, test = corner_run["model"], corner_run["test"]
    assert corner_run["run"].metrics["test"]["accuracy"] >= 0.95
    res = gradcam(model.module, test.images)
    assert res.cams.shape == (len(test), SIZE, SIZE)
    assert res.cams.min() >= 0 and np.allclose(res.cams.reshape(len(test), -1).max(1), 1)
    quad_ratio, square_ratio, peak_in_quadrant = [], [], []
    for img, cam in zip(test.images.numpy()[:, 0], res.cams, strict=True):
        square, quadrant = _square_masks(img)
        quad_ratio.append(cam[quadrant].mean() / max(cam[~quadrant].mean(), 1e-9))
        square_ratio.append(cam[square].mean() / max(cam[~square].mean(), 1e-9))
        peak_in_quadrant.append(quadrant[np.unravel_index(cam.argmax(), cam.shape)])
    # The square's corner holds most of the heat, wherever the square is (all four corners).
    assert np.median(quad_ratio) > 3.0, np.median(quad_ratio)
    assert np.mean(peak_in_quadrant) >= 0.9
    assert np.median(square_ratio) > 1.5, np.median(square_ratio)


def test_gradcam_explains_a_chosen_class_and_layer(corner_run: dict) -> None:
    model, test = corner_run["model"], corner_run["test"]
    images = test.images[:6]
    own = gradcam(model.module, images, np.zeros(6, dtype=int))
    assert (own.targets == 0).all()
    first = resolve_layer(model.module, "features.0.0")  # "net." prefix is optional
    assert first[0] == "net.features.0.0"
    early = gradcam(model.module, images, None, "net.features.0.0")
    assert early.layer == "net.features.0.0" and early.cams.shape == (6, SIZE, SIZE)


def test_layer_choice_and_errors() -> None:
    cnn = Classifier(build_model("cnn", 3, 1, 16, width=4), [0.5], [0.25])
    name, module = resolve_layer(cnn)
    # Default: the last conv's Conv-BN-ReLU block, so the map uses rectified activations.
    assert isinstance(module, torch.nn.Sequential) and isinstance(module[0], torch.nn.Conv2d)
    convs = [n for n, m in cnn.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[-1].startswith(name + ".")
    probed = resolve_layer(cnn, None, torch.rand(1, 1, 16, 16))
    assert probed[0] == name
    # CS 475's "too simple" net ends in a conv on a 1x1 map: Grad-CAM skips it for conv2.
    too_simple = Classifier(build_model("cs475-convnet", 6, 1, 28), [0.5], [0.25])
    last = [n for n, m in too_simple.named_modules() if isinstance(m, torch.nn.Conv2d)][-1]
    chosen, _ = resolve_layer(too_simple, None, torch.rand(1, 1, 28, 28))
    assert chosen != last
    res = gradcam(too_simple, torch.randint(0, 255, (2, 1, 28, 28), dtype=torch.uint8))
    assert res.layer == chosen and res.cams.shape == (2, 28, 28)
    with pytest.raises(CnnlabError, match="no such module"):
        resolve_layer(cnn, "features.99")
    mlp = Classifier(build_model("mlp", 3, 1, 16), [0.5], [0.25])
    with pytest.raises(CnnlabError, match="convolution"):
        resolve_layer(mlp)


def test_pick_items_spreads_over_classes() -> None:
    labels = np.array([0] * 50 + [1] * 5 + [2] * 20)
    idx = pick_items(labels, 6, seed=1)
    assert sorted(np.bincount(labels[idx], minlength=3).tolist()) == [2, 2, 2]
    assert (labels[pick_items(labels, 4, cls=2)] == 2).all()
    assert np.array_equal(pick_items(labels, 6, seed=1), idx)


def test_failure_picks_are_right_wrong_and_highest_loss() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=60)
    labels = rng.integers(0, 3, 60)
    f = find_failures(probs, labels, n=10, seed=0)
    pred = probs.argmax(1)
    assert len(f.correct) == min(10, int((pred == labels).sum()))
    assert (pred[f.correct] == labels[f.correct]).all()
    assert (pred[f.wrong] != labels[f.wrong]).all()
    loss = -np.log(probs[np.arange(60), labels])
    assert np.allclose(f.losses, loss)
    assert np.array_equal(np.sort(loss[f.top_loss])[::-1], loss[f.top_loss])
    assert loss[f.top_loss].min() >= np.sort(loss)[-10]
    only1 = find_failures(probs, labels, n=5, cls=1)
    assert (labels[np.concatenate([only1.correct, only1.wrong, only1.top_loss])] == 1).all()
    rows = f.rows([f"id{i}" for i in range(60)], ["a", "b", "c"])
    assert {r["kind"] for r in rows} == {"correct", "wrong", "top_loss"}
    with pytest.raises(DataError):
        find_failures(probs, -np.ones(60, dtype=int))


def test_noise_std_is_a_tenth_of_each_images_range() -> None:
    # CS 475 1.8.5: std = range / 10 (pixels from -10 to 10: range 20, std 2).
    x = torch.full((2, 1, 64, 64), 0.2)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.7, 0.4  # ranges 0.5 and 0.2
    assert torch.allclose(image_range(x).flatten(), torch.tensor([0.5, 0.2]))
    noisy = add_noise(x, 0.1, np.random.default_rng(0))
    stds = (noisy - x).flatten(1).std(1)
    assert torch.allclose(stds, torch.tensor([0.05, 0.02]), rtol=0.05)
    again = add_noise(x, 0.1, np.random.default_rng(0))
    assert torch.equal(noisy, again)  # seeded: the table is reproducible
    names = [p.name for p in default_perturbations()]
    assert {"clean", "noise 0.1", "hflip", "vflip"} <= set(names)
    assert any(n.startswith("rotate") for n in names)


def test_perturbed_images_are_what_predict_reads_from_the_perturbed_floats() -> None:
    # The table's claim: adding the noise by hand and calling predict gives its accuracy, so
    # each perturbed image equals scale_to_uint8 of the perturbed float array, bit for bit
    # (including values rounded half to even and clipped at both ends).
    from cnnlab.data.value_range import scale_to_uint8

    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (5, 3, 17, 19), dtype=torch.uint8, generator=g)
    images[0, 0, 0, :3] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    for p in default_perturbations(noise=(0.1, 0.6)):
        got = perturb(images, p, np.random.default_rng(7))
        floats = p.fn(images.to(torch.float64) / 255.0, np.random.default_rng(7)).numpy()
        want, _ = scale_to_uint8(floats, (0.0, 1.0))
        assert got.dtype == torch.uint8 and np.array_equal(got.numpy(), want), p.name
    half = torch.tensor([[[[0.5 / 255, 1.5 / 255, 2.5 / 255, -0.3, 1.7]]]], dtype=torch.float64)
    ident = Perturbation("half", "values half-way between two levels", lambda x, g: half)
    assert perturb(torch.zeros(1, 1, 1, 5, dtype=torch.uint8), ident, None).flatten().tolist() \
        == scale_to_uint8(half.numpy(), (0.0, 1.0))[0].flatten().tolist() == [0, 2, 2, 0, 255]


def test_rotation_keeps_the_centre_and_fills_black() -> None:
    x = torch.rand(1, 3, 31, 31)
    assert torch.allclose(rotate(x, 0), x, atol=1e-5)
    ones = torch.ones(1, 1, 31, 31)
    r = rotate(ones, 15)
    assert r[0, 0, 0, 0] == 0 and r[0, 0, 15, 15] > 0.99  # corners black, centre kept
    bar = torch.zeros(1, 1, 31, 31)
    bar[0, 0, 15, :] = 1  # a horizontal line becomes vertical after 90 degrees
    turned = rotate(bar, 90)
    assert turned[0, 0, :, 15].mean() > 0.9 and turned[0, 0, 15, :].mean() < 0.2


def test_flips_change_the_answer_as_the_geometry_says(corner_run: dict) -> None:
    rows = {r["perturbation"]: r for r in robustness_table(corner_run["model"],
                                                           corner_run["test"])}
    assert rows["clean"]["accuracy"] >= 0.95 and rows["clean"]["unchanged"] == 1.0
    # Upside down, a left square stays left; mirrored, it becomes a right square.
    assert rows["vflip"]["accuracy"] >= 0.9
    assert rows["hflip"]["accuracy"] <= 0.1
    assert rows["hflip"]["change"] == pytest.approx(rows["hflip"]["accuracy"]
                                                    - rows["clean"]["accuracy"])
    assert "range/10" in rows["noise 0.1"]["description"]


def test_explain_cli_writes_pngs_and_tables(corner_run: dict, tmp_path: Path) -> None:
    ckpt = str(corner_run["run"].run_dir / "best.pt")
    env = {"CNNLAB_CACHE": str(tmp_path / "cache")}
    r = run_cli("explain", "gradcam", "--weights", ckpt, "--n", "4", "--class", "left",
                "--out", str(tmp_path / "g.png"), env=env)
    assert r.returncode == 0, r.stderr
    w, h = Image.open(tmp_path / "g.png").size
    assert w > 300 and h > 150
    # The other two in-process (same CLI code; a second interpreter start costs seconds).
    cli_main(["explain", "failures", "--weights", ckpt, "--n", "3",
              "--out", str(tmp_path / "f.png")])
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    kinds = [row["kind"] for row in rows]
    assert kinds.count("top_loss") == 3 and kinds.count("correct") == 3
    assert all(float(row["p_pred"]) >= float(row["p_true"]) for row in rows
               if row["kind"] == "wrong")
    assert Image.open(tmp_path / "f.png").size[0] > 200
    cli_main(["explain", "robustness", "--weights", ckpt, "--n", "4",
              "--out", str(tmp_path / "r.png")])
    table = {row["perturbation"]: row for row in csv.DictReader(open(tmp_path / "r.csv"))}
    assert float(table["hflip"]["accuracy"]) <= 0.1 and "noise 0.1" in table
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_explain_cli_errors_are_one_line(corner_run: dict, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    ckpt = str(corner_run["run"].run_dir / "best.pt")
    for args, needle in ((["--layer", "nope"], "nope"), (["--class", "cat"], "cat")):
        with pytest.raises(SystemExit) as exc:
            cli_main(["explain", "gradcam", "--weights", ckpt, *args,
                      "--out", str(tmp_path / "x.png")])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and needle in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()


def test_gallery_tiles_are_shrunk_to_the_pixels_they_fill() -> None:
    from cnnlab.report.gallery import to_display

    img = np.zeros((3, 224, 200), np.uint8)
    img[0] = 255  # red
    img[:, :, 100:] = 0  # right half black
    small = to_display(img, 110)
    assert small.shape == (110, 98, 3)
    assert abs(small[..., 0].mean() - 0.5) < 0.02 and small[..., 1:].max() == 0
    assert to_display(img[:, :40, :40], 110).shape == (40, 40, 3)  # small ones stay as they are
