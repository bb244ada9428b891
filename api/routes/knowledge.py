"""/v1/knowledge: knowledge collections for retrieval steps.

Reviewers and admins ingest and delete documents and configure collections;
any key may list them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from api import knowledge
from api.bodies import CheckedJsonRoute
from api.deps import ReaderDep, ReviewerDep, SessionDep, StateDep
from api.errors import error_responses
from api.knowledge import (
    CollectionList,
    CollectionUpdate,
    DocumentIngest,
    DocumentIngested,
    DocumentList,
)
from api.query_params import StrictQuery
from store.knowledge.names import COLLECTION_NAME_PATTERN
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
