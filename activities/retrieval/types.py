"""Payloads of the retrieval activity. Passages are small chunks; whole
documents never travel through workflow history, only their ids."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.passages import Passage

__all__ = ["Passage", "RetrievalErrorType", "RetrieveInput", "RetrieveResult"]


class RetrieveInput(BaseModel):
    collection: str
    query: str
    top_k: int = Field(default=5, ge=1, le=50)
    step: str = ""
    min_score: float | None = Field(default=None, ge=0, le=1)
    """Passages scoring below this (0..1) are dropped; None: the store's default."""
    apply_min_score: bool = False
    """False for runs scheduled before steps had a minimum score: they get
    every passage, as they did then (workflows/steps/retrieve.py sets it
    behind a patch)."""


class RetrieveResult(BaseModel):
    collection: str
    query: str
    ranking: Literal["fts", "hybrid"]
    passages: list[Passage]
    min_score: float | None = None
    """The minimum score applied (None: none was)."""
    nothing_relevant: bool = False
    """True when no passage reached `min_score`: `passages` is empty."""


class RetrievalErrorType:
    UNKNOWN_COLLECTION = "UnknownCollection"  # not retryable
    EMBEDDING_FAILED = "EmbeddingFailed"  # retryable (provider error)
