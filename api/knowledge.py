"""Knowledge collections: ingest documents, list collections and documents.

Ingest stores text and its chunks only; embeddings of a collection with an
embedding alias are computed by the worker on first retrieval, so the API
never calls a model provider and never holds a provider key.

A document comes as JSON (`{name, text, source?, title?}`) or as the raw
text itself (`text/plain`, `text/markdown`) with `name` (and optionally
`source`, `title`) as query parameters, which is what `curl --data-binary
@refunds.md` sends.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session

from api.errors import validation_details
from core.input_limits import (
    DEFAULT_LIMITS,
    InputLimits,
    InputProblem,
    check_text,
    check_value,
    loads_json,
)
from core.problems import NotFound, Unprocessable, UnsupportedMediaType
from store.knowledge.crud import (
    delete_document,
    ensure_collection,
    get_collection,
    ingest_document,
    list_collections,
    list_documents,
)
from store.knowledge.errors import (
    EmbeddingMismatchError,
    InvalidDocumentError,
    InvalidKnowledgeNameError,
    UnknownCollectionError,
)
from store.knowledge.names import DOCUMENT_NAME_PATTERN
from store.knowledge.tables import (
    KnowledgeCollectionPublic,
    KnowledgeDocument,
    KnowledgeDocumentPublic,
)

T = TypeVar("T")

JSON_TYPES = ("application/json",)
TEXT_TYPES = ("text/plain", "text/markdown", "text/x-markdown")


# -- problems ---------------------------------------------------------------------------


class CollectionNotFound(NotFound):
    code = "knowledge_collection_not_found"


class DocumentNotFound(NotFound):
    code = "knowledge_document_not_found"


class InvalidDocument(Unprocessable):
    code = "invalid_document"


class UnknownModelAlias(Unprocessable):
    code = "unknown_model_alias"


# -- schemas ----------------------------------------------------------------------------


class DocumentIngest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=255,
        pattern=DOCUMENT_NAME_PATTERN,
        description="Unique within the collection, e.g. `refunds.md`; passages are cited as "
        "`name#position`. A `.md` name is chunked as markdown (by headings).",
    )
    text: str = Field(min_length=1, description="The document's text (markdown or plain).")
    source: str | None = Field(
        default=None, max_length=2000, description="Where it came from (path, URL); default: name."
    )
    title: str | None = Field(
        default=None, max_length=500, description="Default: a markdown document's `#` heading."
    )


class DocumentIngested(BaseModel):
    collection: str
    document: KnowledgeDocumentPublic
    chunks: int
    replaced: bool = Field(description="A document of that name was replaced.")
    unchanged: bool = Field(description="The same content was there already; nothing changed.")


class CollectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding_alias: str | None = Field(
        default=None,
        description="Model-registry alias whose embeddings rank the collection (hybrid); "
        "null keeps the current setting.",
    )


class CollectionList(BaseModel):
    items: list[KnowledgeCollectionPublic]


class DocumentList(BaseModel):
    collection: str
    items: list[KnowledgeDocumentPublic]


# -- operations -------------------------------------------------------------------------


def parse_document_body(
    body: bytes,
    content_type: str | None,
    params: dict[str, str | None],
    limits: InputLimits = DEFAULT_LIMITS,
) -> DocumentIngest:
    """The request as a DocumentIngest: JSON, or raw text plus query parameters,
    within the input limits (a document's text may have `max_document_chars`;
    no string may hold a NUL, which PostgreSQL cannot store)."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media not in JSON_TYPES + TEXT_TYPES:
        raise UnsupportedMediaType(
            f"send the document as application/json ({{name, text, source?, title?}}) or as "
            f"text/plain or text/markdown with ?name=..., not {media!r}",
            details={"accepted": [*JSON_TYPES, *TEXT_TYPES]},
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidDocument("the body is not UTF-8 text") from None
    try:
        if media in JSON_TYPES:
            where = {field: f"body.{field}" for field in DocumentIngest.model_fields}
            data = _checked(
                lambda: loads_json(text, limits, max_string_chars=limits.max_document_chars)
            )
            if isinstance(data, dict):
                # Only the text may be as long as a document.
                rest = {key: value for key, value in data.items() if key != "text"}
                _checked(lambda: check_value(rest, limits, root="body"))
            return DocumentIngest.model_validate(data)
        where = {"name": "query.name", "source": "query.source", "title": "query.title"}
        where["text"] = "body"
        if not params.get("name"):
            raise InvalidDocument(
                "a text body needs the document's name as a query parameter: ?name=refunds.md",
                details=[{"path": "query.name", "message": "Field required", "type": "missing"}],
            )
        _checked(lambda: check_value(params, limits, root="query"))
        _checked(lambda: check_text(text, path="body", max_chars=limits.max_document_chars))
        return DocumentIngest.model_validate({**params, "text": text})
    except ValidationError as exc:
        details = validation_details(exc.errors())
        for detail in details:
            field = detail["path"].split(".")[0]
            detail["path"] = detail["path"].replace(field, where.get(field, field), 1)
        first = details[0]
        raise InvalidDocument(f"{first['path']}: {first['message']}", details=details) from None


def _checked(check: Callable[[], T]) -> T:
    """`check()`, its input-limit refusal as an InvalidDocument naming the path."""
    try:
        return check()
    except InputProblem as problem:
        raise InvalidDocument(problem.message, details=problem.details) from None


def document_public(row: KnowledgeDocument) -> KnowledgeDocumentPublic:
    return KnowledgeDocumentPublic.model_validate(row, from_attributes=True)


def ingest(session: Session, *, collection: str, body: DocumentIngest) -> DocumentIngested:
    try:
        result = ingest_document(
            session,
            collection=collection,
            name=body.name,
            source=body.source or body.name,
            text=body.text,
            title=body.title,
        )
    except (InvalidKnowledgeNameError, InvalidDocumentError, EmbeddingMismatchError) as exc:
        raise InvalidDocument(str(exc)) from None
    return DocumentIngested(
        collection=collection,
        document=document_public(result.document),
        chunks=result.chunks,
        replaced=result.replaced,
        unchanged=result.unchanged,
    )


def configure(
    session: Session, *, collection: str, body: CollectionUpdate, aliases: Collection[str]
) -> KnowledgeCollectionPublic:
    """Create the collection if missing and set its embedding alias."""
    alias = body.embedding_alias
    if alias is not None and alias not in aliases:
        raise UnknownModelAlias(
            f"unknown model alias {alias!r}: the model registry has "
            f"{', '.join(sorted(aliases)) or 'none'}",
            details={"embedding_alias": alias, "known": sorted(aliases)},
        )
    try:
        ensure_collection(session, name=collection, embedding_alias=alias)
    except InvalidKnowledgeNameError as exc:
        raise InvalidDocument(str(exc)) from None
    return next(c for c in list_collections(session) if c.name == collection)


def collections(session: Session) -> list[KnowledgeCollectionPublic]:
    return list_collections(session)


def documents(session: Session, *, collection: str) -> list[KnowledgeDocumentPublic]:
    try:
        rows = list_documents(session, collection=collection)
    except UnknownCollectionError as exc:
        raise CollectionNotFound(str(exc), details={"known": exc.known}) from None
    return [document_public(row) for row in rows]


def remove(session: Session, *, collection: str, name: str) -> None:
    if get_collection(session, name=collection) is None:
        raise CollectionNotFound(f"no knowledge collection named {collection!r}")
    if not delete_document(session, collection=collection, name=name):
        raise DocumentNotFound(
            f"collection {collection!r} has no document named {name!r}",
            details={"collection": collection, "document": name},
        )
