"""A retrieved passage: what the knowledge store returns and the retrieval
activity carries through history (a small chunk with its citation id, never
a whole document)."""

from __future__ import annotations

from pydantic import BaseModel


class Passage(BaseModel):
    id: str
    """Citation id: `<document name>#<chunk position>`, e.g. `refunds.md#2`."""
    document: str
    source: str
    """Where the document came from (path or URL given at ingest)."""
    title: str | None = None
    position: int
    text: str
    score: float
