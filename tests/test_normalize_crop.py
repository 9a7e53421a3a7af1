"""--normalize and --crop-size give the inputs torchvision's transforms give (fixed images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.decode import decode_image
from cnnlab.data.load import LoadOptions, load_data
from cnnlab.data.normalize import parse_normalize
from cnnlab.errors import CnnlabError
from cnnlab.models import Classifier


def _photo(path: Path, w: int, h: int, seed: int = 0) -> Path:
    """A fixed non-square RGB image with gradients and noise (resampling shows in every pixel)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1)
    img = img + rng.integers(0, 40, (h, w, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
    return path


def _torchvision_resize_centercrop(path: Path, size: int, crop: int) -> np.ndarray:
    """transforms.Resize(size) then CenterCrop(crop) on a PIL image, as torchvision computes
    them (functional.resize/_compute_resized_output_size and functional.center_crop)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize((new_w, new_h), Image.BILINEAR)
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    return np.asarray(img).transpose(2, 0, 1)


@pytest.mark.parametrize("w,h", [(301, 199), (180, 333), (256, 300)])
def test_resize_shorter_then_center_crop_is_torchvisions(tmp_path: Path, w: int, h: int):
    f = _photo(tmp_path / "x.png", w, h)
    got = decode_image(f, (256, 256), 3, "shorter", 224)
    want = _torchvision_resize_centercrop(f, 256, 224)
    assert got.shape == (3, 224, 224)
    assert np.abs(got.astype(int) - want.astype(int)).max() == 0


def test_crop_size_option_through_load_data(tmp_path: Path):
    for cls in ("a", "b"):
        for i in range(3):
            _photo(tmp_path / "d" / cls / f"{i}.png", 120 + 7 * i, 90, seed=i)
    opts = LoadOptions(image_size=64, crop_size=56, resize="shorter", test_split=0,
                       val_split=0)
    splits = load_data(tmp_path / "d", opts)
    assert splits.train.image_size == (56, 56)
    i = splits.train.ids.index("a/1.png")
    want = _torchvision_resize_centercrop(tmp_path / "d" / "a" / "1.png", 64, 56)
    assert torch.equal(splits.train.images[i], torch.from_numpy(np.ascontiguousarray(want)))
    # crop after the other resize modes, and of array sources, is a centre crop too
    sq = load_data(tmp_path / "d", LoadOptions(image_size=64, crop_size=56, test_split=0,
                                               val_split=0))
    full = load_data(tmp_path / "d", LoadOptions(image_size=64, test_split=0, val_split=0))
    assert torch.equal(sq.train.images, full.train.images[:, :, 4:60, 4:60])


def test_array_sources_are_center_cropped(tmp_path: Path):
    x = np.random.default_rng(0).integers(0, 256, (20, 40, 40), dtype=np.uint8)
    np.save(tmp_path / "s_images.npy", x)
    np.save(tmp_path / "s_labels.npy", np.arange(20) % 2)
    s = load_data(tmp_path, LoadOptions(crop_size=32, test_split=0, val_split=0))
    assert s.train.image_size == (32, 32)
    i = int(s.train.ids[0])
    assert torch.equal(s.train.images[0, 0], torch.from_numpy(x[i, 4:36, 4:36]))


def _normalized(mean: list[float], std: list[float], images: torch.Tensor) -> torch.Tensor:
    """What the network sees: the Classifier's normalization of [0, 1] images."""
    return Classifier(torch.nn.Identity(), mean, std)(images.float() / 255.0)


def test_normalize_half_half_is_torchvisions(tmp_path: Path):
    f = _photo(tmp_path / "x.png", 64, 48)
    img = decode_image(f, (32, 32), 3, "shorter")
    # ToTensor() then Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), by hand
    want = (img.astype(np.float32) / 255.0 - 0.5) / 0.5
    mean, std = parse_normalize("0.5,0.5", 3)
    got = _normalized(mean, std, torch.from_numpy(img)[None])[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.min() < -0.5 and got.max() > 0.5  # now in -1..1, not 0..1


@pytest.mark.parametrize("spec,mean,std", [
    ("imagenet", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ("[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]", [0.485, 0.456, 0.406],
     [0.229, 0.224, 0.225]),
    ("(0.5,0.5,0.5),(0.5,0.5,0.5)", [0.5] * 3, [0.5] * 3),
    ("none", [0.0] * 3, [1.0] * 3),
    ("127.5,63.75", [0.5] * 3, [0.25] * 3),  # 0..255 statistics (EECS 445 style)
])
def test_normalize_specs(spec: str, mean: list[float], std: list[float]):
    m, s = parse_normalize(spec, 3)
    assert m == pytest.approx(mean) and s == pytest.approx(std)


def test_normalize_train_and_errors():
    imgs = torch.full((2, 1, 4, 4), 51, dtype=torch.uint8)
    m, s = parse_normalize("train", 1, imgs)
    assert m == pytest.approx([0.2]) and s == pytest.approx([1e-3])
    assert parse_normalize("imagenet", 1)[0] == pytest.approx([0.449])
    for bad in ("0.5,0.5,0.5", "abc", "0.5,0"):
        with pytest.raises(CnnlabError, match="--normalize"):
            parse_normalize(bad, 3)
