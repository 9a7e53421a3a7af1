"""One rich console for the whole tool; messages go to stderr so stdout stays for data."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)

# Tables are data: they go to stdout so `cnnlab models | grep resnet` works; piped, rich would
# wrap at 80 columns and split rows over lines that grep then shows only in part.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
