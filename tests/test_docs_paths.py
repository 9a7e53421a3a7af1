"""README and docs/ name only data a user can get: no path that exists only on our machines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The project's shared data folder, our workspace and scratch folders, a home directory.
OURS = re.compile(r"\.\./shared|/work/|/tmp/|/root/|/home/(?!you/)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_path_that_only_exists_on_our_machines(page: Path) -> None:
    hits = [f"{page.name}:{i}: {line.strip()}" for i, line in
            enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
            if OURS.search(line)]
    assert not hits, "\n".join(hits)


def test_every_data_set_the_docs_fetch_is_registered() -> None:
    from cnnlab.data.fetch import DATASETS

    named = set()
    for page in PAGES:
        named |= set(re.findall(r"cnnlab data fetch ([a-z0-9-]+)", page.read_text()))
    assert named and named <= set(DATASETS), named - set(DATASETS)
