"""Decode a list of image files into one ImageSet, straight into the decode cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data import cache
from cnnlab.data.decode import decode_many, image_info
from cnnlab.data.imageset import ImageSet
from cnnlab.data.options import LoadOptions, Progress
from cnnlab.errors import DataError


def _file_channels(files: list[Path], opts: LoadOptions) -> int:
    if opts.channels is not None:
        return opts.channels
    # Grayscale data sets stay single-channel: a third of the work for the same information.
    for f in files[:: max(1, len(files) // 16)][:16]:
        try:
            _, _, mode = image_info(f)
        except DataError:
            continue
        if mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
            return 3
    return 1


def decode_files(files: list[Path], parts: list[str], classes: list[str], labels: list[int],
                 ids: list[str], opts: LoadOptions, settings: dict, progress: Progress,
                 notes: dict | None = None) -> ImageSet:
    """Decode `files` (with their partitions, labels and ids) at the options' size, cached."""
    size = opts.image_size or opts.default_image_size
    crop = opts.crop_size
    channels = _file_channels(files, opts)
    settings = {**settings, "size": size, "channels": channels, "resize": opts.resize,
                "skip_bad": opts.skip_bad, **({"crop": crop} if crop else {})}
    key = cache.cache_key(files, settings) if opts.use_cache else ""
    if key and (hit := cache.load_cached(key)) is not None:
        hit.meta["cache"] = "hit"
        return hit
    if opts.cache_only:
        raise cache.CacheMiss(f"{len(files)} files at {size} px are not in the decode cache")
    side = crop or size
    shape = (len(files), channels, side, side)
    # Decode straight into the cache file: a folder larger than RAM never sits in memory.
    # Its size is known before decoding: what fits neither on disk nor in memory is refused.
    writer, space_note = _open_writer(key, shape, settings.get("root") or settings.get("csv"))
    tick = progress("decoding images", len(files)) if progress else None
    try:
        arr, kept = decode_many(files, (size, size), channels, opts.resize, opts.skip_bad, tick,
                                out=None if writer is None else writer.images, crop=crop)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    meta = dict(notes or {})
    if space_note:
        meta["data_notes"] = [*meta.get("data_notes", []), space_note]
    if len(kept) < len(files):
        meta["skipped_bad_images"] = len(files) - len(kept)
        # which ones, so the doctor can list them (ids: their paths under the data root)
        meta["skipped_bad_files"] = [ids[i] for i in sorted(set(range(len(files))) - set(kept))]
    if writer is not None:
        if len(kept) < len(files):  # the kept rows are at the front; write an exact-size entry
            try:
                smaller = cache.create_cached(key, (len(kept), *arr.shape[1:]))
            except cache.CacheSpaceError:
                smaller = None
            full, writer = writer, smaller
            if writer is not None:
                cache.copy_rows(arr, np.arange(len(kept)), writer.images)
            arr = np.array(arr[: len(kept)]) if writer is None else arr
            full.abort()
        if writer is not None:
            hit = writer.commit([labels[i] for i in kept], classes, [ids[i] for i in kept],
                                [parts[i] for i in kept], meta)
            if hit is not None:
                hit.meta["cache"] = "written"
                return hit
            arr = np.array(arr[: len(kept)])  # could not finish the cache: keep it in memory
    return ImageSet(torch.from_numpy(arr), torch.tensor([labels[i] for i in kept],
                                                        dtype=torch.int64),
                    classes, [ids[i] for i in kept], np.asarray([parts[i] for i in kept],
                                                                dtype=str), meta)


def _open_writer(key: str, shape: tuple[int, ...], where: str | None
                 ) -> tuple[cache.CacheWriter | None, str | None]:
    """(cache writer or None for in-memory decoding, a note when the cache had no room)."""
    need = int(np.prod(shape))
    what = (f"{where}: {shape[0]} images decoded at {shape[1]}x{shape[2]}x{shape[3]} need "
            f"{cache.human_bytes(need)}")
    avail = cache.available_memory()
    fits_memory = avail is None or need <= avail * 0.8  # the rest: the model and batches
    too_big = f"{what}, more than the memory available ({cache.human_bytes(avail or 0)})"
    if not key:
        if not fits_memory:
            raise DataError(f"{too_big}; use a smaller --image-size (or the decode cache, which "
                            "keeps the images on disk)")
        return None, None
    try:
        writer = cache.create_cached(key, shape)
    except cache.CacheSpaceError as exc:
        if not fits_memory:
            raise DataError(f"{what}: the decode cache {exc.folder} has "
                            f"{cache.human_bytes(exc.free)} free and memory "
                            f"{cache.human_bytes(avail or 0)}; set CNNLAB_CACHE to a folder with "
                            f"{cache.human_bytes(need)} free, or use a smaller --image-size") \
                from None
        return None, (f"decode cache {exc.folder} has {cache.human_bytes(exc.free)} free, "
                      f"{cache.human_bytes(need)} needed: decoded in memory instead (set "
                      "CNNLAB_CACHE to a folder with more room to keep a cache)")
    if writer is None and not fits_memory:
        raise DataError(f"{too_big}, and the decode cache {cache.cache_root()} cannot be "
                        "written; set CNNLAB_CACHE to a writable folder with room, or use a "
                        "smaller --image-size")
    return writer, None
