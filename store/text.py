"""Text every backend can store.

PostgreSQL text columns cannot hold NUL (U+0000): psycopg refuses the whole
statement ("PostgreSQL text fields cannot contain NUL (0x00) bytes"). A NUL
in an approval text (from a run's input), a reviewer's comment or edit, or a
run's error message made the audit and run-index writes fail on every
attempt. Free text that runs write goes through `storable_text` first, on
SQLite too, so both backends keep the same row: each NUL becomes U+2400
SYMBOL FOR NULL (␀), which a reader sees and which never ends a C string.
The exact text stays in the run's history (and in its approval's payload
hash); the database row is the readable copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NUL", "NUL_SYMBOL", "storable_text", "storable_values"]

NUL = "\x00"
NUL_SYMBOL = "\u2400"


def storable_text(text: str) -> str:
    """`text` with every NUL replaced by ␀ (the same object when it has none)."""
    return text.replace(NUL, NUL_SYMBOL) if NUL in text else text


def storable_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values with every string made storable (other values as they are)."""
    return {
        name: storable_text(value) if isinstance(value, str) else value
        for name, value in values.items()
    }
