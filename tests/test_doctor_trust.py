"""cnnlab doctor does not mislead: an untrustworthy label check says so, a skipped check reads
"not checked", and a file's pixel size is a fact about the file, not a content outlier."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

CLASSES = ("stripes", "blobs")


def texture(cls: int, rng: np.random.Generator, w: int, h: int, colour: bool) -> np.ndarray:
    """A photo-like RGB picture: class 0 waves of stripes, class 1 round blobs, both noisy.

    With `colour` the classes also differ in tint (warm vs cool), which downscaled pixels pick
    up; without it only the texture tells them apart, as in photos of cats and dogs.
    """
    tint = np.array([1.0, 0.7, 0.4] if cls == 0 else [0.4, 0.7, 1.0]) if colour else np.ones(3)
    tint = tint * rng.uniform(0.9, 1.1, 3)
    base = rng.uniform(70, 150)
    if cls == 0:
        yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
        angle, freq = rng.uniform(0, np.pi), rng.uniform(4, 9)
        wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle))
                      + rng.uniform(0, 6))
        img = (base + 70 * wave)[..., None] * tint
    else:
        pil = Image.fromarray(np.clip(np.ones((h, w, 3)) * base * tint, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        for _ in range(int(rng.integers(3, 7))):
            r = rng.uniform(0.08, 0.2) * min(w, h)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            fill = tuple(int(v) for v in np.clip(rng.uniform(140, 255) * tint, 0, 255))
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        img = np.asarray(pil).astype(float)
    img = img + rng.normal(0, 18, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_textures(root: Path, n_per_class: int = 150, flips: int = 0, colour: bool = True,
                   random_labels: bool = False, big: int = 0, seed: int = 0) -> list[str]:
    """root/<class>/*.jpg of 48-96 px (each its own size); returns the ids of flipped labels.

    `flips` images go into the other class's folder; `random_labels` files every image under a
    coin toss; the first `big` images are 5x wider and taller than the rest.
    """
    rng = np.random.default_rng(seed)
    items = [(c, i) for c in range(len(CLASSES)) for i in range(n_per_class)]
    flip = set(rng.choice(len(items), flips, replace=False).tolist()) if flips else set()
    flipped = []
    for j, (c, i) in enumerate(items):
        w, h = (int(v) for v in rng.integers(48, 97, 2))
        if j < big:
            w, h = 5 * w, 5 * h
        label = int(rng.integers(0, 2)) if random_labels else 1 - c if j in flip else c
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{CLASSES[c]}_{i:03d}.jpg"
        Image.fromarray(texture(c, rng, w, h, colour)).save(folder / name, quality=85)
        if label != c and not random_labels:
            flipped.append(f"{CLASSES[label]}/{name}")
    return flipped


def doctor(cli, data: Path, out: Path, *args: str) -> tuple[str, dict, str]:
    """Run `cnnlab doctor` for real: (its summary line, doctor.json, doctor.html)."""
    code, stdout, stderr = cli("doctor", data, "--out", out, *args)
    assert code == 0, stderr
    line = next(x for x in (stdout + stderr).splitlines() if x.startswith("doctor:"))
    return line, json.loads((out / "doctor.json").read_text()), (out / "doctor.html").read_text()


def test_random_labels_make_the_label_check_unreliable(cli, tmp_path: Path) -> None:
    """Labels that are coin tosses: the check says it cannot tell and names no label error."""
    data = tmp_path / "d"
    write_textures(data, n_per_class=60, random_labels=True)
    line, report, page = doctor(cli, data, tmp_path / "o", "--features", "pixels")
    assert "label check unreliable" in line and "try --features backbone" in line, line
    assert "likely label errors" not in line
    lab = report["label_issues"]
    assert lab["reliable"] is False and lab["status"] == "unreliable"
    assert lab["suggest"] == "--features backbone" and "accuracy" in lab["reason"]
    assert lab["items"] == [] and report["summary"]["label_issues"] is None
    assert report["summary"]["labels"]["status"] == "unreliable"
    assert "data-issue=" not in page and "Unreliable:" in page
    assert 'data-card="label check"' in page


@pytest.mark.slow
def test_planted_flips_on_a_learnable_set_are_found_and_bounded(cli, tmp_path: Path) -> None:
    """30 of 300 labels flipped, classes that pixels separate: at most 3x30 flags, half found."""
    data = tmp_path / "d"
    flipped = write_textures(data, flips=30, colour=True)
    line, report, _ = doctor(cli, data, tmp_path / "o", "--features", "pixels",
                             "--skip", "duplicates")
    lab = report["label_issues"]
    assert lab["reliable"] is True, lab["reason"]
    flagged = {r["id"] for r in lab["items"]}
    assert len(flagged) <= 3 * len(flipped), (len(flagged), len(flipped))
    assert len(flagged & set(flipped)) >= len(flipped) / 2, (len(flagged & set(flipped)))
    assert f"{len(flagged)} likely label error" in line


@pytest.mark.slow
def test_photo_like_textures_default_to_backbone_and_pixels_say_unreliable(
        cli, tmp_path: Path) -> None:
    """Colour does not tell the classes apart (as in photos): pixels cannot check the labels
    and say so; the default (auto: backbone for colour images >= 32 px) can, within bounds."""
    data = tmp_path / "d"
    flipped = write_textures(data, flips=30, colour=False)
    line, pixels, _ = doctor(cli, data, tmp_path / "p", "--features", "pixels",
                             "--skip", "duplicates", "--skip", "outliers")
    assert "label check unreliable" in line and pixels["label_issues"]["items"] == []
    assert pixels["label_issues"]["suggest"] == "--features backbone"
    line, auto, _ = doctor(cli, data, tmp_path / "a", "--skip", "duplicates", "--skip",
                           "outliers")
    assert auto["settings"]["features"] == "backbone", auto["settings"]
    lab = auto["label_issues"]
    assert lab["reliable"] is True, lab["reason"]
    flagged = {r["id"] for r in lab["items"]}
    assert len(flagged) <= 3 * len(flipped) and len(flagged & set(flipped)) >= len(flipped) / 2
    assert auto["timings"]["features"] < 120  # 300 images on 2 busy cores: ~25 s


def test_skipped_checks_read_not_checked_never_zero(cli, tmp_path: Path) -> None:
    data = tmp_path / "d"
    write_textures(data, n_per_class=20)
    line, report, page = doctor(cli, data, tmp_path / "o", "--features", "pixels",
                                "--skip", "duplicates", "--skip", "outliers")
    for what in ("leaks", "duplicates", "outliers", "unusual files"):
        assert f"{what} not checked" in line, line
    assert not re.search(r"\b0 (duplicate|outlier|leaked|unusual)", line), line
    s = report["summary"]
    assert s["leaks"] is None and s["duplicate_groups"] is None and s["outliers"] is None
    assert s["unusual_files"] is None and s["not_checked"] == ["duplicates", "outliers"]
    assert report["duplicates"]["status"] == "not checked"
    assert "No duplicate images" not in page and "No outliers" not in page
    for card in ("duplicate groups", "outliers", "leaked held-out images", "unusual files"):
        value = re.search(rf'data-card="{card}"><div class="label">[^<]*</div>'
                          r'<div class="value">([^<]*)</div>', page)
        assert value and value.group(1) == "not checked", (card, value)
    assert page.count("Not checked (--skip duplicates)") == 2  # leaks and duplicates sections


def test_odd_pixel_sizes_are_unusual_files_not_content_outliers(cli, tmp_path: Path) -> None:
    data = tmp_path / "d"
    write_textures(data, n_per_class=30, big=4)
    big = {f"{CLASSES[0]}/{CLASSES[0]}_{i:03d}.jpg" for i in range(4)}
    line, report, page = doctor(cli, data, tmp_path / "o", "--features", "pixels",
                                "--skip", "labels")
    files = {r["id"]: r["why"] for r in report["unusual_files"]["items"]}
    assert set(files) == big and all("size" in why for why in files.values())
    assert not big & {r["id"] for r in report["outliers"]["items"]}
    assert report["summary"]["unusual_files"] == 4 and "4 unusual files" in line
    assert f"{report['summary']['outliers']} outliers" in line
    files_section = page.split('id="files"')[1].split("</section>")[0]
    assert files_section.count('class="tile') == 4
    outliers_section = page.split('id="outliers"')[1].split("</section>")[0]
    assert "_000.jpg" not in outliers_section
