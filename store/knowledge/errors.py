"""The knowledge store's errors: one base class, so a caller can catch them all."""

from __future__ import annotations

from collections.abc import Sequence

from store.errors import StoreError


class KnowledgeError(StoreError):
    """Base of the knowledge store's errors."""


class InvalidKnowledgeNameError(KnowledgeError, ValueError):
    """A collection or document name that cannot be stored or cited."""


class UnknownCollectionError(KnowledgeError, LookupError):
    """No collection of that name; `known` lists the ones there are."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        names = ", ".join(self.known) or "none yet"
        super().__init__(f"unknown knowledge collection {name!r} (collections: {names})")


class InvalidDocumentError(KnowledgeError, ValueError):
    """A document that cannot be stored: too large, or not text (NUL
    characters, which PostgreSQL cannot store, or broken Unicode)."""


class EmptyDocumentError(InvalidDocumentError):
    """A document with no text to index."""


class EmptyQueryError(KnowledgeError, ValueError):
    """A query with no word to search for (empty, or only punctuation and symbols)."""

    def __init__(self, query: str) -> None:
        self.query = query
        shown = query if len(query) <= 80 else query[:79] + "…"
        super().__init__(
            f"the query {shown!r} has no word to search for: "
            "give at least one word (letters or digits)"
        )


class EmbeddingMismatchError(KnowledgeError, ValueError):
    """Embeddings that do not line up with the chunks they are for."""


class DuplicateDocumentError(KnowledgeError, ValueError):
    """Documents whose content is already in the collection under another name.

    Identical content under two names would put identical passages in a
    search's top k (the usual cause: a folder ingested from another root, or
    a renamed file). `pairs` holds (new name, name already there, or the other
    new name with the same content).
    """

    def __init__(self, collection: str, pairs: Sequence[tuple[str, str]], hint: str) -> None:
        self.collection = collection
        self.pairs = list(pairs)
        shown = ", ".join(f"{new} = {old}" for new, old in self.pairs[:5])
        more = f" and {len(self.pairs) - 5} more" if len(self.pairs) > 5 else ""
        super().__init__(
            f"{len(self.pairs)} document(s) have the same content as another document of "
            f"collection {collection!r} ({shown}{more}): {hint}"
        )
