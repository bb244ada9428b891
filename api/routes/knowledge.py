"""/v1/knowledge: knowledge collections for retrieval steps.

Reviewers and admins ingest (JSON, raw text, or a multipart upload for
documents over the API's body limit), prune and delete documents and
configure collections; any key may list and search them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from api import knowledge
from api.bodies import CheckedJsonRoute
from api.deps import ReaderDep, ReviewerDep, SessionDep, StateDep
from api.errors import error_responses, http_error
from api.knowledge import (
    CollectionList,
    CollectionUpdate,
    DocumentIngest,
    DocumentIngested,
    DocumentList,
    DocumentTooLarge,
    InvalidDocument,
    PruneRequest,
    PruneResult,
)
from api.query_params import StrictQuery
from store.knowledge.lookup import DEFAULT_TOP_K, MAX_QUERY_CHARS, MAX_TOP_K, SearchResults
from store.knowledge.names import COLLECTION_NAME_PATTERN
from store.knowledge.search import DEFAULT_MIN_SCORE
from store.knowledge.tables import KnowledgeCollectionPublic

router = APIRouter(
    prefix="/v1/knowledge",
    tags=["knowledge"],
    route_class=CheckedJsonRoute,
    dependencies=[StrictQuery],
)

CollectionPath = Annotated[str, Path(min_length=1, max_length=100, pattern=COLLECTION_NAME_PATTERN)]

_DOCUMENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The document as JSON, or its raw text with `?name=` (and optionally "
        "`source`, `title`) as query parameters.",
        "content": {
            "application/json": {"schema": DocumentIngest.model_json_schema()},
            "text/markdown": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A multipart form: the document as the part `file`, and optionally "
        "`name` (default: the file's name), `source` and `title`. Up to the store's document "
        "limit (2,000,000 characters by default), beyond the API's JSON body limit.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string"},
                        "source": {"type": "string"},
                        "title": {"type": "string"},
                    },
                }
            }
        },
    }
}
_UPLOAD_FIELDS = ("name", "source", "title")


@router.get(
    "",
    response_model=CollectionList,
    responses=error_responses(401, 403, 503),
    summary="Knowledge collections with their document and chunk counts",
)
def list_collections(_principal: ReaderDep, session: SessionDep) -> CollectionList:
    return CollectionList(items=knowledge.collections(session))


@router.put(
    "/{collection}",
    response_model=KnowledgeCollectionPublic,
    responses=error_responses(401, 403, 422, 503),
    summary="Create a collection or set its embedding alias (hybrid ranking)",
)
def put_collection(
    collection: CollectionPath,
    body: CollectionUpdate,
    _principal: ReviewerDep,
    session: SessionDep,
    state: StateDep,
) -> KnowledgeCollectionPublic:
    return knowledge.configure(
        session, collection=collection, body=body, aliases=state.catalog.aliases
    )


@router.get(
    "/{collection}/documents",
    response_model=DocumentList,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="The documents of a collection",
)
def list_documents(
    collection: CollectionPath, _principal: ReaderDep, session: SessionDep
) -> DocumentList:
    return DocumentList(
        collection=collection, items=knowledge.documents(session, collection=collection)
    )


@router.post(
    "/{collection}/documents",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentIngested,
    responses={
        200: {"model": DocumentIngested, "description": "Replaced, or unchanged"},
        **error_responses(401, 403, 413, 415, 422, 503),
    },
    openapi_extra=_DOCUMENT_BODY,
    summary="Ingest a document (created when new, replaced when changed)",
)
async def post_document(
    collection: CollectionPath,
    request: Request,
    response: Response,
    _principal: ReviewerDep,
    session: SessionDep,
    state: StateDep,
    name: Annotated[str | None, Query(description="document name, for a text body")] = None,
    source: Annotated[str | None, Query(description="for a text body")] = None,
    title: Annotated[str | None, Query(description="for a text body")] = None,
) -> DocumentIngested:
    body = await run_in_threadpool(
        knowledge.parse_document_body,
        await request.body(),
        request.headers.get("content-type"),
        {"name": name, "source": source, "title": title},
        state.settings.input_limits,
    )
    result = await run_in_threadpool(knowledge.ingest, session, collection=collection, body=body)
    if result.replaced or result.unchanged:
        response.status_code = status.HTTP_200_OK
    return result


@router.post(
    "/{collection}/files",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentIngested,
    responses={
        200: {"model": DocumentIngested, "description": "Replaced, or unchanged"},
        **error_responses(401, 403, 408, 409, 413, 415, 422, 503),
    },
    openapi_extra=_UPLOAD_BODY,
    summary="Upload a document as a multipart file (up to the store's document limit)",
)
async def upload_document(
    collection: CollectionPath,
    request: Request,
    response: Response,
    _principal: ReviewerDep,
    session: SessionDep,
    state: StateDep,
) -> DocumentIngested:
    """The form is read here, after the caller is known (a declared `UploadFile`
    parameter would be read before authentication); the body-size middleware
    bounds it at `upload_limit_bytes` while it streams in."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise http_error(
            415,
            "unsupported_media_type",
            f"upload the document as multipart/form-data (curl -F file=@refunds.md), "
            f"not {media or 'a body without a type'!r}",
        )
    limits = state.settings.input_limits
    try:
        form = await request.form(max_files=1, max_fields=len(_UPLOAD_FIELDS))
    except ClientDisconnect:
        return response  # too large or too slow: the middleware answers
    except (MultiPartException, StarletteHTTPException) as exc:
        # Starlette turns its parser's MultiPartException into a 400 HTTPException.
        reason = exc.detail if isinstance(exc, StarletteHTTPException) else exc.message
        raise InvalidDocument(f"the multipart body cannot be read: {reason}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidDocument(
                "the form has no file part named `file` (curl -F file=@refunds.md)",
                details=[{"path": "form.file", "message": "Field required", "type": "missing"}],
            )
        unknown = sorted(set(form) - {"file", *_UPLOAD_FIELDS})
        if unknown:
            raise InvalidDocument(
                f"unknown form fields {', '.join(unknown)}: the form takes file, "
                + ", ".join(_UPLOAD_FIELDS)
            )
        fields = {key: form.get(key) for key in _UPLOAD_FIELDS}
        if any(value is not None and not isinstance(value, str) for value in fields.values()):
            raise InvalidDocument("only `file` may be a file part; name, source, title are text")
        data = await upload.read()
        try:
            body = await run_in_threadpool(
                knowledge.upload_document,
                data,
                filename=upload.filename,
                name=fields["name"],  # type: ignore[arg-type]
                source=fields["source"],  # type: ignore[arg-type]
                title=fields["title"],  # type: ignore[arg-type]
                limits=limits,
            )
        except DocumentTooLarge as exc:
            raise http_error(413, exc.code, exc.message, details=exc.details) from None
    finally:
        await form.close()
    result = await run_in_threadpool(knowledge.ingest, session, collection=collection, body=body)
    if result.replaced or result.unchanged:
        response.status_code = status.HTTP_200_OK
    return result


@router.post(
    "/{collection}/prune",
    response_model=PruneResult,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="Remove every document whose name is not in `keep` (a folder's sync)",
)
def prune_documents(
    collection: CollectionPath, body: PruneRequest, _principal: ReviewerDep, session: SessionDep
) -> PruneResult:
    return knowledge.prune(session, collection=collection, body=body)


@router.get(
    "/{collection}/search",
    response_model=SearchResults,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="The passages a chain's retrieve step would be given, with citation ids and scores",
)
def search_collection(
    collection: CollectionPath,
    request: Request,
    _principal: ReaderDep,
    session: SessionDep,
    q: Annotated[
        str,
        Query(max_length=MAX_QUERY_CHARS, description="the question, as a customer asks it"),
    ],
    k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="passages to return")] = DEFAULT_TOP_K,
    min_score: Annotated[
        float,
        Query(
            ge=0,
            le=1,
            description="drop passages scoring below this; default: the retrieve step's; "
            "0 shows every passage",
        ),
    ] = DEFAULT_MIN_SCORE,
) -> SearchResults:
    knowledge.check_query_string(request.scope.get("query_string", b""))
    return knowledge.search(session, collection=collection, query=q, top_k=k, min_score=min_score)


@router.delete(
    "/{collection}/documents/{name:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="Delete a document and its passages",
)
def delete_document(
    collection: CollectionPath, name: str, _principal: ReviewerDep, session: SessionDep
) -> Response:
    knowledge.remove(session, collection=collection, name=name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
