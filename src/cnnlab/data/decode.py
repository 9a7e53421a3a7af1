"""Decode image files with Pillow into uint8 arrays of one size and channel count."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cnnlab.choices import RESIZE_MODES  # noqa: F401 - the modes decode() takes, named once
from cnnlab.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm"}
# crop: keep the aspect ratio, centre-crop to the square; stretch: squash to the square;
# shorter: torchvision's Resize(N) (shorter side to N, bilinear, antialiased as Pillow does)
# then CenterCrop (crop_size, else N), pixel for pixel as torchvision computes it on PIL images.

# Refuse decompression bombs outright rather than only warning about them.
Image.MAX_IMAGE_PIXELS = 64_000_000


def is_image_file(path: Path) -> bool:
    """True when the file name has an image extension."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, RGBA, CMYK, I;16, F ...) to L or RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if img.mode == "I" and arr.max() <= 255:
            hi = 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on black so transparent areas do not become arbitrary colours.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, rgba)
    target = "L" if channels == 1 else "RGB"
    return img.convert(target) if img.mode != target else img


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """torchvision.transforms.Resize(size) on a PIL image: shorter side to `size`, bilinear."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)  # torchvision truncates the long side
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.BILINEAR)  # Pillow's default reducing_gap=None


def center_crop(img: Image.Image, crop: int) -> Image.Image:
    """torchvision.transforms.CenterCrop(crop) on a PIL image (zero padding when too small)."""
    w, h = img.size
    if crop > w or crop > h:
        pad_l, pad_t = max(0, (crop - w) // 2), max(0, (crop - h) // 2)
        padded = Image.new(img.mode, (max(w, crop), max(h, crop)))
        padded.paste(img, (pad_l, pad_t))
        img, (w, h) = padded, padded.size
        if (w, h) == (crop, crop):
            return img
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return img.crop((left, top, left + crop, top + crop))


def resize_image(img: Image.Image, size: tuple[int, int], mode: str = "crop",
                 crop: int | None = None) -> Image.Image:
    """Resize to (h, w): 'crop' keeps the aspect ratio and centre-crops, 'stretch' does not,
    'shorter' is torchvision's Resize(h) + CenterCrop; then a centre crop of `crop` if given."""
    h, w = size
    if mode == "shorter":
        return center_crop(resize_shorter(img, h), crop or h)
    if img.size != (w, h):
        if mode == "stretch":
            img = img.resize((w, h), Image.BILINEAR, reducing_gap=2.0)
        else:
            img = ImageOps.fit(img, (w, h), Image.BILINEAR)
    return center_crop(img, crop) if crop else img


def decode_image(path: Path, size: tuple[int, int] | None, channels: int,
                 resize: str = "crop", crop: int | None = None) -> np.ndarray:
    """Decode one file to uint8 [C,H,W]; raise DataError naming the file on any problem."""
    try:
        if os.path.getsize(path) == 0:
            raise DataError(f"{path}: empty file (0 bytes), not an image")
    except OSError:
        pass  # reported below by the decoder itself (missing file, permissions, ...)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": noise, not an error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > Image.MAX_IMAGE_PIXELS:  # also when warnings race
                    raise Image.DecompressionBombError("too many pixels")
                if size is not None and img.format == "JPEG" and resize != "shorter":
                    # Let libjpeg decode at a reduced scale: far faster for big photos.
                    img.draft("RGB" if channels == 3 else "L", (size[1] * 2, size[0] * 2))
                img.load()
                img = ImageOps.exif_transpose(img) or img
                img = _to_mode(img, channels)
                if size is not None:
                    img = resize_image(img, size, resize, crop)
                arr = np.asarray(img, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: image is too large (possible decompression bomb)") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (unknown or damaged format)") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except MemoryError:
        raise DataError(f"{path}: image is too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file can make a decoder raise anything
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise DataError(f"{path}: cannot decode image ({detail or type(exc).__name__})") \
            from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if min(arr.shape[1:]) < 1:
        raise DataError(f"{path}: empty image")
    return np.ascontiguousarray(arr)


def image_info(path: Path) -> tuple[int, int, str]:
    """(width, height, mode) from the file header, without decoding pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.size[0], img.size[1], img.mode
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad file
        raise DataError(f"{path}: not a readable image ({exc})") from None


def decode_many(paths: Sequence[Path], size: tuple[int, int], channels: int, resize: str = "crop",
                skip_bad: bool = False,
                progress: Callable[[int], None] | None = None,
                out: np.ndarray | None = None,
                crop: int | None = None) -> tuple[np.ndarray, list[int]]:
    """Decode files in parallel threads into uint8 [N,C,H,W]; returns (array, kept indices).

    `out` (e.g. a disk-backed array) receives the images in place; with skipped files the
    returned array is then `out` itself with the kept rows moved to the front.
    """
    in_place = out is not None
    if out is None:
        shape = (crop, crop) if crop else (size[0], size[1])
        out = np.empty((len(paths), channels, *shape), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    errors: list[tuple[int, str]] = []

    def work(i: int) -> None:
        try:
            out[i] = decode_image(paths[i], size, channels, resize, crop)
            ok[i] = True
        except DataError as exc:
            errors.append((i, str(exc)))

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    # Pillow releases the GIL while decoding and resizing, so threads use every core.
    workers = max(1, min(32, cores))
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(work, range(len(paths))):
            if progress is not None:
                progress(1)
    if errors and not skip_bad:
        first = min(errors)[1]
        more = f" (and {len(errors) - 1} more; --skip-bad skips them)" if len(errors) > 1 else \
            " (--skip-bad skips unreadable images)"
        raise DataError(first + more)
    kept = np.flatnonzero(ok).tolist()
    if len(kept) == len(paths):
        return out, kept
    if in_place:
        for j, i in enumerate(kept):  # j <= i: compacting forwards never overwrites a kept row
            out[j] = out[i]
        return out, kept
    return out[kept], kept
