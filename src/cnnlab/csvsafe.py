"""CSV cells a spreadsheet cannot run as formulas (OWASP "CSV injection" advice).

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is taken as a formula by
Excel, LibreOffice and Google Sheets; a class or file name such as `=HYPERLINK(...)` in
predictions.csv would then run when someone opens the file. Such cells get a leading `'`
(shown by spreadsheets, and removed again by cnnlab's own CSV reader). Plain numbers such as
`-0.5` or `+3` stay numbers: they cannot be formulas and must keep parsing as numbers.
"""

from __future__ import annotations

import re

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def safe_cell(value: object) -> object:
    """`value`, with a `'` in front when it is text a spreadsheet would run as a formula."""
    if not isinstance(value, str) or not value.startswith(TRIGGERS):
        return value
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value


def unescape_cell(value: str) -> str:
    """Undo safe_cell on a cell cnnlab wrote: `'=x` -> `=x` (anything else is unchanged)."""
    if len(value) > 1 and value[0] == "'" and value[1:].startswith(TRIGGERS):
        return value[1:]
    return value
