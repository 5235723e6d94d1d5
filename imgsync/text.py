"""Text from elsewhere — a peer's error, its last words, a version it reports — made safe to
print and store: printable ASCII on one line, of bounded length. No terminal escape that a
hostile peer sends reaches an operator's terminal, log or state DB."""

from __future__ import annotations

import re
from typing import Any

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def printable_text(value: str, limit: int = 2000) -> str:
    """``value`` as one printable line of at most ``limit`` characters (each other
    character, escapes and line ends included, becomes ``?``)."""
    return _UNPRINTABLE.sub("?", value[:limit])


def printable(value: Any) -> str | None:
    """A short printable string (a version, a store name), or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    return printable_text(value, 80)
