"""Shared fixtures: small data sets written to disk by the tests themselves."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _pin_xdist_worker() -> None:
    """Under `pytest -n N` (pytest-xdist) give worker k CPU k of this process's CPUs.

    The suite is mostly single-threaded Python and process start-up (about one core busy on
    average), so two workers nearly halve its time on two cores; but cnnlab and torch use one
    intra-op thread per CPU of the affinity mask, and two workers each spinning two OpenMP
    threads on two cores would be slower than one. Pinning makes every test, and every
    process it starts (they inherit the mask), use its worker's core alone.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if len(cpus) < 2 or count < 2:
        return
    share = max(1, len(cpus) // count)
    k = int(worker[2:]) % count
    mine = cpus[(k * share) % len(cpus):][:share] or cpus[:share]
    os.sched_setaffinity(0, set(mine))
    os.environ["OMP_NUM_THREADS"] = str(len(mine))


_pin_xdist_worker()

# The files that take longest (pytest --durations on 2 cores), started first: xdist hands a
# worker the next file whenever it runs low, so long files started last would leave one core
# idle at the end (the Makefile turns off xdist's own by-test-count ordering).
LONGEST_FIRST = ("test_search.py", "test_process_tree.py", "test_settings.py",
                 "test_install.py", "test_interrupt.py", "test_transfer.py", "test_track.py",
                 "test_bad_input.py", "test_distributed.py", "test_augment.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (a stable sort: tests keep their order within a file)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own decode cache, so tests never see each other's files."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path_factory.mktemp("cache")))


def digits_arrays(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as uint8 images [N,8,8] and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * (255 / 16)).round().astype(np.uint8)
    return (x[:n], d.target[:n]) if n else (x, d.target)


def pattern_images(n_per_class: int, size: int = 16, classes: int = 3, seed: int = 0,
                   rgb: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Easy synthetic classes: class k has a bright bar at a class-specific position."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(classes):
        for _ in range(n_per_class):
            img = rng.integers(0, 60, size=(size, size, 3 if rgb else 1)).astype(np.uint8)
            r0 = (k * size) // classes
            img[r0: r0 + max(2, size // classes), :, :] = 230
            xs.append(img if rgb else img[..., 0])
            ys.append(k)
    return np.stack(xs), np.asarray(ys)


def write_pattern_npy(folder: Path, n_per_class: int, test_every: int | None = 4) -> Path:
    """Synthetic 8x8 grey images of 3 easy classes as <folder>/pat_*.npy; every
    `test_every`-th image goes to the test split (none when None)."""
    x, y = pattern_images(n_per_class, size=8, classes=3, rgb=False)
    test = np.arange(len(y)) % test_every == 0 if test_every else np.zeros(len(y), bool)
    folder.mkdir(parents=True)
    np.save(folder / "pat_images.npy", x[~test])
    np.save(folder / "pat_labels.npy", y[~test])
    if test.any():
        np.save(folder / "pat_test_images.npy", x[test])
        np.save(folder / "pat_test_labels.npy", y[test])
    return folder


def write_image_folder(root: Path, n_per_class: int = 12, size: int = 16, classes: int = 3,
                       partitions: bool = False, fmt: str = "png") -> Path:
    """root/<class>/*.png (or root/{train,val}/<class>/...) with pattern images."""
    x, y = pattern_images(n_per_class, size, classes)
    for i, (img, lab) in enumerate(zip(x, y, strict=True)):
        part = ("val" if i % 4 == 0 else "train") if partitions else ""
        folder = root / part / f"class{lab}" if part else root / f"class{lab}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"img{i:03d}.{fmt}")
    return root


@pytest.fixture
def cli(capsys: pytest.CaptureFixture):
    """Run the real entry point (cnnlab.cli.main) in-process: (exit code, stdout, stderr).

    In-process because every `cnnlab` process imports torch and scikit-learn (seconds of
    CPU each); run_cli below runs a real process where the exit status itself is tested.
    """
    from cnnlab.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `cnnlab` command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A class-folder tree of 36 PNGs (3 classes)."""
    return write_image_folder(tmp_path / "imgs")


@pytest.fixture
def digits_npy(tmp_path: Path) -> Path:
    """The QuickDraw-homework .npy layout built from load_digits (test split unlabeled)."""
    x, y = digits_arrays()
    d = tmp_path / "npy"
    d.mkdir()
    np.save(d / "digits_images.npy", x[:1000])
    np.save(d / "digits_labels.npy", y[:1000])
    np.save(d / "digits_dev_images.npy", x[1000:1400])
    np.save(d / "digits_dev_labels.npy", y[1000:1400])
    np.save(d / "digits_test_images.npy", x[1400:])
    return d


def write_corner_folder(root: Path, counts: tuple[int, int] = (100, 100), size: int = 32,
                        square: int = 8, seed: int = 0) -> Path:
    """root/left|right/*.png: a bright square in a corner on a noise background.

    Class "left" has it top-left or bottom-left, "right" top-right or bottom-right, so the
    square alone decides the class, a vertical flip keeps it and a horizontal flip swaps it.
    """
    rng = np.random.default_rng(seed)
    far = size - square
    spots = {"left": [(0, 0), (far, 0)], "right": [(0, far), (far, far)]}
    for (cls, places), n in zip(spots.items(), counts, strict=True):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 110, (size, size), dtype=np.uint8)
            r, c = places[i % 2]
            img[r:r + square, c:c + square] = 255
            Image.fromarray(img).save(root / cls / f"{cls}_{i:03d}.png")
    return root


def missing_component(what: str, how: str) -> None:
    """Skip a test whose real component is missing here; under CI (CI=true) fail instead, so a
    skipped browser or database test can never hide behind a green run."""
    msg = f"{what} is missing ({how}; `make test` installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser",
                             shutil.which("chromium") or "", shutil.which("chromium-browser")
                             or "") if p and Path(p).is_file()), None)
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium_page(width: int = 1200, height: int = 900):  # noqa: ANN201
    """A page of Debian's headless Chromium (through playwright), closed afterwards; a missing
    browser skips the test, or fails it under CI=true."""
    if CHROMIUM is None:
        missing_component("chromium", "Debian: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


@pytest.fixture(scope="session")
def zygote():  # noqa: ANN201 - clitools.Zygote
    """Real `cnnlab` processes forked from one pre-imported interpreter (clitools.Zygote)."""
    from clitools import shared_zygote

    return shared_zygote()
