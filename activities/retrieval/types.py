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


class RetrieveResult(BaseModel):
    collection: str
    query: str
    ranking: Literal["fts", "hybrid"]
    passages: list[Passage]


class RetrievalErrorType:
    UNKNOWN_COLLECTION = "UnknownCollection"  # not retryable
    EMBEDDING_FAILED = "EmbeddingFailed"  # retryable (provider error)
