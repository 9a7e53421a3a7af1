"""What a run trained on, in a few hashes: a resume on other data is refused, never re-split.

Each split's fingerprint hashes its item ids with their labels (sorted, so only the content
counts); the class list is kept as is. Image bytes are not read: a file replaced under the same
name is not noticed, but images added, removed, moved to another class folder or moved to
another split are.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.errors import DataError, name_list

VERSION = 1


def _digest(lines: list[str]) -> str:
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode("utf-8", errors="backslashreplace") + b"\n")
    return h.hexdigest()[:16]


def _items(data: ImageSet) -> list[str]:
    return [f"{i}\t{int(y)}" for i, y in zip(data.ids, data.labels.tolist(), strict=True)]


def data_fingerprint(splits: DataSplits) -> dict:
    """The classes, and per split the item count and hashes of its ids and (id, label)s."""
    per = {name: {"n": len(data), "ids": _digest(list(map(str, data.ids))),
                  "items": _digest(_items(data))} for name, data in splits.items()}
    everything = [item for _, data in splits.items() for item in _items(data)]
    return {"version": VERSION, "classes": list(splits.classes), "splits": per,
            "n": len(everything), "ids": _digest([s.split("\t")[0] for s in everything]),
            "items": _digest(everything)}


def _class_change(old: list[str], new: list[str]) -> str:
    added = [c for c in new if c not in old]
    gone = [c for c in old if c not in new]
    said = [f"class {name_list(added, 5)} added"] * bool(added) + \
        [f"class {name_list(gone, 5)} removed"] * bool(gone)
    return ", ".join(said) or "the class order changed"


def describe_change(old: dict, new: dict) -> str | None:
    """What differs between two fingerprints in a few words; None when they are the same."""
    if {k: old.get(k) for k in new} == new:
        return None
    said = []
    if old.get("classes") != new["classes"]:
        said.append(_class_change(list(old.get("classes") or []), new["classes"]))
    n_old, n_new = int(old.get("n") or 0), new["n"]
    if n_new > n_old:
        said.append(f"{n_new - n_old} image(s) added")
    elif n_new < n_old:
        said.append(f"{n_old - n_new} image(s) removed")
    elif old.get("ids") != new["ids"]:
        said.append("images renamed, replaced or moved to another class")
    elif old.get("items") != new["items"]:
        said.append("labels changed")
    if old.get("splits") != new["splits"]:
        before = old.get("splits") or {}
        sizes = [f"{n} {before.get(n, {}).get('n', 0)} -> {s['n']}"
                 for n, s in new["splits"].items() if before.get(n, {}).get("n", 0) != s["n"]]
        said.append("the split differs" + (f" ({', '.join(sizes)})" if sizes else ""))
    return "; ".join(said)


def saved_fingerprint(path: Path) -> dict | None:
    """The fingerprint in a checkpoint, read without reading its weights (memory-mapped);
    None when it holds none or cannot be read (loading it for training names the problem)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any unreadable file: the real load reports it
        return None
    found = (ckpt.get("data") or {}).get("fingerprint") if isinstance(ckpt, dict) else None
    return found if isinstance(found, dict) else None


def check_resume(path: Path, splits: DataSplits) -> str | None:
    """Refuse to resume `path` on data other than its run's (the splits would be made anew and
    mixed); a note when the checkpoint is too old to hold a fingerprint."""
    saved = saved_fingerprint(path)
    if saved is None:
        return (f"{path} holds no data fingerprint (an older cnnlab wrote it): the data could "
                "not be checked for changes since the run started")
    change = describe_change(saved, data_fingerprint(splits))
    if change:
        raise DataError(f"--resume: the data changed since the run started ({change}); "
                        "resuming would train and score on other splits. Start a new run: drop "
                        "--resume and pass another --out (or --force to replace this one)")
    return None
