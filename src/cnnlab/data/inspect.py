"""A data set at a glance: class counts per split, statistics, size range and baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data.decode import image_info
from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.data.load import LoadOptions, make_splits, read_source
from cnnlab.data.sources.registry import SOURCES
from cnnlab.data.stats import channel_mean_std
from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_path, write_json

MAX_SIZE_SCAN = 5000  # file headers read for the size range (evenly spaced sample beyond)


def original_sizes(path: Path | None, data: ImageSet, opts: LoadOptions) -> dict:
    """Width/height range of the source images before any resizing."""
    source = SOURCES.get(data.meta.get("format", ""))
    files = source.files(Path(path), opts) if path is not None and source is not None and \
        source.files is not None else []
    channels = f"{data.channels} channel{'s' if data.channels > 1 else ''}"
    if not files:
        h, w = data.image_size
        return {"min": [w, h], "max": [w, h], "stored": [w, h], "sampled": 0,
                "description": f"{w}x{h} (all images, {channels})"}
    step = max(1, len(files) // MAX_SIZE_SCAN)
    sample = files[::step]
    dims = []
    for f in sample:
        try:
            w, h, _ = image_info(f)
        except CnnlabError:
            continue
        dims.append((w, h))
    if not dims:
        raise CnnlabError(f"{path}: none of the images could be read")
    arr = np.asarray(dims)
    lo, hi = arr.min(0).tolist(), arr.max(0).tolist()
    med = [int(v) for v in np.median(arr, 0)]
    sh, sw = data.image_size
    note = "" if step == 1 else f", from {len(sample)} of {len(files)} files"
    return {"min": lo, "max": hi, "stored": [sw, sh], "sampled": len(dims), "median": med,
            "description": f"width {lo[0]}..{hi[0]}, height {lo[1]}..{hi[1]} pixels "
                           f"(median {med[0]}x{med[1]}{note}); decoded at {sw}x{sh}, {channels}"}


def _ratio(counts: list[int]) -> float | None:
    nz = [c for c in counts if c > 0]
    if not nz or len(nz) < len(counts):
        return None  # a class without examples: the ratio is unbounded
    return max(nz) / min(nz)


def baselines(splits: DataSplits) -> dict:
    """Accuracy of a uniform random guesser and of always answering the train majority class."""
    train_counts = splits.train.class_counts()
    major = int(np.argmax(train_counts))
    name, target = "train", splits.train
    for cand in ("test", "val"):
        s = splits.get(cand)
        if s is not None and bool((s.labels >= 0).any()):
            name, target = cand, s
            break
    lab = target.labels.numpy()
    lab = lab[lab >= 0]
    k = len(splits.classes)
    return {"split": name, "random": 1.0 / k,
            "majority": float((lab == major).mean()) if len(lab) else None,
            "majority_class": splits.classes[major],
            "random_by_prior": float(sum((c / max(1, sum(train_counts))) ** 2
                                         for c in train_counts))}


def inspect_data(path: str | Path | None, opts: LoadOptions | None = None
                 ) -> tuple[dict, DataSplits]:
    """The summary `cnnlab inspect data` prints (JSON-ready) and the splits it came from."""
    opts = opts or LoadOptions()
    p = Path(path).expanduser() if path is not None else None
    data = read_source(p, opts)
    splits = make_splits(data, opts)
    counts = {name: s.class_counts() for name, s in splits.items()}
    total = [sum(v[i] for v in counts.values()) for i in range(len(splits.classes))]
    mean, std = channel_mean_std(splits.train.images)
    unlabeled_by_split = {name: int((s.labels < 0).sum()) for name, s in splits.items()}
    unlabeled = sum(unlabeled_by_split.values())
    summary = {
        "name": data.meta.get("name", str(path)),
        "path": str(path) if path is not None else None,
        "format": data.meta.get("format", "digits"),
        "num_images": len(data),
        "unlabeled": unlabeled,
        "unlabeled_by_split": unlabeled_by_split,  # a test split without labels: N here, not 0
        "sizes": {name: len(sp) for name, sp in splits.items()},
        "classes": list(splits.classes),
        "counts": counts,
        "split_note": splits.split_note,
        "image_size": original_sizes(p, data, opts),
        "channels": data.channels,
        "train_mean": mean,
        "train_std": std,
        "imbalance_ratio": {"train": _ratio(counts["train"]), "all": _ratio(total)},
        "baselines": baselines(splits),
    }
    return summary, splits


def _atomic_save(fig: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")  # type: ignore[attr-defined]


SAMPLE_COLUMNS = 10


def _sample_figure(summary: dict, splits: DataSplits, path: Path) -> dict[str, list[str]]:
    """One row per split (test included): one image per class, or the first unlabeled images."""
    import matplotlib.pyplot as plt

    classes = summary["classes"]
    rows = []
    for name, sp in splits.items():
        labels = sp.labels.numpy()
        picks = []
        for k, c in enumerate(classes[:SAMPLE_COLUMNS]):
            where = np.flatnonzero(labels == k)
            if len(where):
                picks.append((int(where[0]), c[:14]))
        room = SAMPLE_COLUMNS - len(picks)
        for i in np.flatnonzero(labels < 0)[:room]:
            picks.append((int(i), "unlabeled"))
        if picks:
            rows.append((name, sp, picks))
    cols = max([len(p) for _, _, p in rows] + [1])
    fig, axes = plt.subplots(max(1, len(rows)), cols, figsize=(max(4.0, 1.6 * cols),
                                                              1.9 * max(1, len(rows)) + 0.5),
                             squeeze=False)
    for a in axes.flat:
        a.axis("off")
    for r, (name, sp, picks) in enumerate(rows):
        for j, (i, title) in enumerate(picks):
            a = axes[r][j]
            img = sp.images[i].numpy()
            if img.shape[0] == 1:
                a.imshow(img[0], cmap="gray", vmin=0, vmax=255)
            else:
                a.imshow(img.transpose(1, 2, 0))
            a.set_title(f"{name}: {title}", fontsize=7)
    fig.suptitle(f"{summary['name']}: sample images of every split", fontsize=9)
    _atomic_save(fig, path)
    plt.close(fig)
    return {name: [title for _, title in picks] for name, _, picks in rows}


def write_figures(summary: dict, splits: DataSplits, out: Path) -> dict:
    """class_counts.png (bars per split), samples.png (images of every split), summary.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes = summary["classes"]
    k = len(classes)
    names = list(summary["counts"])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * k + 2), 3.5))
    width = 0.8 / max(1, len(names))
    x = np.arange(k)
    for i, sp in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, summary["counts"][sp], width, label=sp)
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center",
                       fontsize=8)
    ax.set_ylabel("images")
    ax.set_title(f"{summary['name']}: images per class")
    ax.legend()
    _atomic_save(fig, out / "class_counts.png")
    plt.close(fig)

    shown = _sample_figure(summary, splits, out / "samples.png")

    files = {"class_counts": str(out / "class_counts.png"), "samples": str(out / "samples.png"),
             "summary": str(out / "summary.json")}
    write_json(out / "summary.json", {**summary, "files": files, "samples_shown": shown})
    return files
