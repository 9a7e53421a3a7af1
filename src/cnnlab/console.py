"""One rich console for the whole tool; messages go to stderr so stdout stays for data."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)
