"""Knowledge collections: ingest documents, list collections and documents.

Ingest stores text and its chunks only; embeddings of a collection with an
embedding alias are computed by the worker on first retrieval, so the API
never calls a model provider and never holds a provider key.

A document comes as JSON (`{name, text, source?, title?}`) or as the raw
text itself (`text/plain`, `text/markdown`) with `name` (and optionally
`source`, `title`) as query parameters, which is what `curl --data-binary
@refunds.md` sends. Both are bounded by the API's body limit (1 MiB by
default); a larger document, up to the store's limit, comes as a multipart
upload (`curl -F file=@handbook.md`), see `upload_limit_bytes`.

Content already in the collection under another name is refused (409): the
same passages would otherwise fill a search's top k twice. To keep a
collection in step with a folder, upload its files (unchanged ones are
no-ops) and prune the names that are gone (`prune`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Annotated, TypeVar
from urllib.parse import unquote_to_bytes

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
from core.problems import Conflict, NotFound, Unprocessable, UnsupportedMediaType
from store.knowledge.crud import (
    delete_document,
    delete_documents,
    ensure_collection,
    get_collection,
    ingest_document,
    list_collections,
    list_documents,
)
from store.knowledge.decoding import decode_document
from store.knowledge.errors import (
    DuplicateDocumentError,
    EmbeddingMismatchError,
    EmptyQueryError,
    InvalidDocumentError,
    InvalidKnowledgeNameError,
    UnknownCollectionError,
)
from store.knowledge.lookup import InvalidQueryError, SearchResults, search_collection
from store.knowledge.names import COLLECTION_NAME_PATTERN, DOCUMENT_NAME_PATTERN
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


class DuplicateDocument(Conflict):
    code = "duplicate_document"


class InvalidQuery(Unprocessable):
    code = "invalid_query"


class DocumentTooLarge(Unprocessable):
    """An upload whose text is over the store's limit (the route answers 413)."""

    code = "document_too_large"


# -- uploads ----------------------------------------------------------------------------

UPLOAD_PATH = re.compile(f"/v1/knowledge/{COLLECTION_NAME_PATTERN.strip('^$')}/files")
"""The multipart upload route, whose body limit is `upload_limit_bytes`."""
UPLOAD_OVERHEAD_BYTES = 64 * 1024
"""Room for the multipart framing and the small form fields beside the file."""


def upload_limit_bytes(limits: InputLimits) -> int:
    """Bytes an upload may have: a document at the store's character limit
    in the widest UTF-8 (4 bytes a character), plus the form's framing.
    The text's characters are counted once it is decoded."""
    return 4 * limits.max_document_chars + UPLOAD_OVERHEAD_BYTES


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


def upload_document(
    data: bytes,
    *,
    filename: str | None,
    name: str | None,
    source: str | None,
    title: str | None,
    limits: InputLimits = DEFAULT_LIMITS,
) -> DocumentIngest:
    """An uploaded file as a DocumentIngest: named `name`, else by the file's
    name; UTF-8 text (a byte-order mark dropped) of at most the store's
    character limit (DocumentTooLarge naming it)."""
    name = name or (filename or "").rsplit("/", 1)[-1] or None
    if not name:
        raise InvalidDocument(
            "the upload has no name: give the form field `name` (e.g. refunds.md) "
            "or a file name in the part's Content-Disposition",
            details=[{"path": "form.name", "message": "Field required", "type": "missing"}],
        )
    try:
        text = decode_document(data, name=f"uploaded file {name!r}")
    except InvalidDocumentError as exc:
        raise InvalidDocument(str(exc)) from None
    if len(text) > limits.max_document_chars:
        raise DocumentTooLarge(
            f"uploaded file {name!r} has {len(text):,} characters; the limit is "
            f"{limits.max_document_chars:,} (split it into several documents)",
            details={"characters": len(text), "max_document_chars": limits.max_document_chars},
        )
    fields = {"name": name, "source": source, "title": title}
    _checked(lambda: check_value(fields, limits, root="form"))
    try:
        return DocumentIngest.model_validate({**fields, "text": text})
    except ValidationError as exc:
        details = validation_details(exc.errors())
        for detail in details:
            detail["path"] = f"form.{detail['path']}"
        first = details[0]
        raise InvalidDocument(f"{first['path']}: {first['message']}", details=details) from None


def ingest(session: Session, *, collection: str, body: DocumentIngest) -> DocumentIngested:
    """Store the document; 409 for content already there under another name."""
    try:
        result = ingest_document(
            session,
            collection=collection,
            name=body.name,
            source=body.source or body.name,
            text=body.text,
            title=body.title,
            allow_duplicate=False,
        )
    except DuplicateDocumentError as exc:
        new, existing = exc.pairs[0]
        raise DuplicateDocument(
            str(exc), details={"document": new, "same_content_as": existing}
        ) from None
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


DocumentName = Annotated[str, Field(min_length=1, max_length=255, pattern=DOCUMENT_NAME_PATTERN)]


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: list[DocumentName] = Field(
        max_length=100_000,
        description="Every document name the collection should keep (a folder's files, "
        "named by their path relative to it); the others are removed.",
    )


class PruneResult(BaseModel):
    collection: str
    removed: list[str]
    kept: int


def prune(session: Session, *, collection: str, body: PruneRequest) -> PruneResult:
    """Remove every document of the collection whose name is not in `keep`."""
    try:
        rows = list_documents(session, collection=collection)
    except UnknownCollectionError as exc:
        raise CollectionNotFound(str(exc), details={"known": exc.known}) from None
    keep = set(body.keep)
    gone = [row.name for row in rows if row.name not in keep]
    delete_documents(session, collection=collection, names=gone)
    return PruneResult(collection=collection, removed=gone, kept=len(rows) - len(gone))


def check_query_string(raw: bytes) -> None:
    """422 for a query string whose percent-encoded bytes are not UTF-8.

    Starlette decodes such bytes to U+FFFD, so a lone surrogate (`%ED%A0%80`)
    or a Latin-1 `%E9` would be searched as a replacement character instead
    of being refused.
    """
    try:
        unquote_to_bytes(raw.decode("latin-1")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidQuery(
            f"the query string is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start} once decoded; a lone surrogate cannot be encoded): percent-encode "
            "the query's UTF-8 bytes",
            details=[{"path": "query.q", "message": "not UTF-8", "type": "value_error"}],
        ) from None


def search(
    session: Session, *, collection: str, query: str, top_k: int, min_score: float
) -> SearchResults:
    """The search tool's answer; 404 for an unknown collection, 422 for a bad q or k."""
    try:
        return search_collection(
            session, collection=collection, query=query, top_k=top_k, min_score=min_score
        )
    except UnknownCollectionError as exc:
        raise CollectionNotFound(str(exc), details={"known": exc.known}) from None
    except InvalidQueryError as exc:
        raise InvalidQuery(
            str(exc),
            details=[{"path": f"query.{exc.field}", "message": str(exc), "type": "value_error"}],
        ) from None
    except EmptyQueryError as exc:
        raise InvalidQuery(
            str(exc),
            details=[{"path": "query.q", "message": str(exc), "type": "value_error"}],
        ) from None


def remove(session: Session, *, collection: str, name: str) -> None:
    if get_collection(session, name=collection) is None:
        raise CollectionNotFound(f"no knowledge collection named {collection!r}")
    if not delete_document(session, collection=collection, name=name):
        raise DocumentNotFound(
            f"collection {collection!r} has no document named {name!r}",
            details={"collection": collection, "document": name},
        )
