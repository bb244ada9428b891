"""Searching a collection as a person does (`chorus search`, the API's
search endpoint): the query and k checked, the answer with its ranking mode.

It shows what a chain's retrieve step would be given, ranked the same way
as far as the database can rank alone: full text, with the step's default
minimum score (`DEFAULT_MIN_SCORE`; `min_score=0` shows every passage). A collection with an
embedding alias is ranked hybrid in a chain (the worker embeds the query
with the provider); the CLI and the API never call a provider, so the
answer says `ranking: "fts"` beside `collection_ranking: "hybrid"`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from sqlmodel import Session

from core.passages import Passage
from store.knowledge.crud import require_collection
from store.knowledge.errors import KnowledgeError
from store.knowledge.search import DEFAULT_MIN_SCORE, search

MAX_QUERY_CHARS = 2_000
"""A question, not a document: longer queries are refused (only the first
words are searched anyway, see `store.knowledge.search.MAX_QUERY_TERMS`)."""
MAX_TOP_K = 50
"""The retrieve step's own bound (`RetrieveInput.top_k`)."""
DEFAULT_TOP_K = 5

Ranking = Literal["fts", "hybrid"]


class InvalidQueryError(KnowledgeError, ValueError):
    """A search query or k that cannot be searched; `field` names which."""

    def __init__(self, field: Literal["q", "k", "min_score"], message: str) -> None:
        self.field = field
        super().__init__(message)


class SearchResults(BaseModel):
    collection: str
    query: str
    top_k: int
    min_score: float = Field(description="Passages scoring below this (0..1) were dropped.")
    nothing_relevant: bool = Field(
        description="No passage reached `min_score`: a chain's retrieve step would say so."
    )
    ranking: Ranking = Field(description="How these passages were ranked: `fts` (full text).")
    collection_ranking: Ranking = Field(
        description="How a chain's retrieve step ranks this collection: `hybrid` when it has "
        "an embedding alias (the query embedded by the worker), else `fts`."
    )
    passages: list[Passage] = Field(
        description="Best first; cite a passage by its `id` (`document#position`)."
    )


def check_query(query: str) -> str:
    """The query, or InvalidQueryError saying what is wrong with it."""
    if not query.strip():
        raise InvalidQueryError("q", "the query is empty: give a question or a few words")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidQueryError(
            "q",
            f"the query has {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,} "
            "(ask a question, not a document)",
        )
    if "\x00" in query:
        raise InvalidQueryError("q", "the query contains a NUL character")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidQueryError(
            "q", "the query is not valid Unicode (it holds a lone surrogate)"
        ) from None
    return query


def check_top_k(top_k: int) -> int:
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidQueryError("k", f"k must be between 1 and {MAX_TOP_K}, got {top_k}")
    return top_k


def check_min_score(min_score: float) -> float:
    if not 0.0 <= min_score <= 1.0:  # also refuses NaN
        raise InvalidQueryError("min_score", f"min_score must be between 0 and 1, got {min_score}")
    return min_score


def search_collection(
    session: Session,
    *,
    collection: str,
    query: str,
    top_k: int = DEFAULT_TOP_K,
    min_score: float = DEFAULT_MIN_SCORE,
) -> SearchResults:
    """The `top_k` best passages of `collection` for `query` scoring at least
    `min_score`, full-text ranked.

    InvalidQueryError, UnknownCollectionError, EmptyQueryError (a query with
    no word to search for, e.g. only punctuation).
    """
    check_query(query)
    check_top_k(top_k)
    check_min_score(min_score)
    found = require_collection(session, name=collection)
    passages = search(session, collection=collection, query=query, top_k=top_k, min_score=min_score)
    return SearchResults(
        collection=collection,
        query=query,
        top_k=top_k,
        min_score=min_score,
        nothing_relevant=not passages,
        ranking="fts",
        collection_ranking="hybrid" if found.embedding_alias else "fts",
        passages=passages,
    )
