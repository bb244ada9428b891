"""/v1/knowledge over HTTP: the real API (uvicorn on a free port) on a
SQLite database; reviewers and admins ingest, any key lists."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.server import ApiServer
from store.engine import make_engine, session_scope
from store.knowledge.crud import list_chunks
from store.knowledge.search import search
from tests.api.conftest import admin, api_settings, assert_error, bearer, temporal_address
from tests.retrieval.conftest import HELP_CENTER

REFUNDS = (HELP_CENTER / "refunds.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
async def api(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    state = tmp_path_factory.mktemp("kb-api")
    settings = api_settings(
        temporal=temporal_address(temporal_env),
        database_url=f"sqlite:///{state / 'chorus.db'}",
        state_dir=state,
        task_queue=f"kb-api-{uuid.uuid4()}",
    )
    server = ApiServer(settings)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture(scope="module")
async def http(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        yield client


@dataclass(frozen=True)
class Keys:
    service: str
    reviewer: str


@pytest.fixture(scope="module")
async def keys(http: httpx.AsyncClient) -> Keys:
    made = {}
    for role in ("service", "reviewer"):
        body = {"name": f"kb-{role}-{uuid.uuid4().hex[:6]}", "role": role}
        response = await http.post("/v1/keys", json=body, headers=admin())
        assert response.status_code == 201, response.text
        made[role] = response.json()["key"]
    return Keys(**made)


def collection() -> str:
    return f"kb-{uuid.uuid4().hex[:8]}"


async def test_ingest_json_then_same_then_changed(
    http: httpx.AsyncClient, keys: Keys, api: ApiServer
) -> None:
    name = collection()
    url = f"/v1/knowledge/{name}/documents"
    body = {"name": "refunds.md", "text": REFUNDS, "source": "kb/refunds.md"}
    created = await http.post(url, json=body, headers=bearer(keys.reviewer))
    assert created.status_code == 201, created.text
    data = created.json()
    assert (data["collection"], data["replaced"], data["unchanged"]) == (name, False, False)
    assert data["chunks"] == data["document"]["chunk_count"] == 6
    assert (data["document"]["title"], data["document"]["source"]) == ("Refunds", "kb/refunds.md")

    same = await http.post(url, json=body, headers=bearer(keys.reviewer))
    assert same.status_code == 200 and same.json()["unchanged"] is True

    changed = await http.post(
        url, json=body | {"text": "# Refunds\n\nAll refunds take 2 days."}, headers=admin()
    )
    assert changed.status_code == 200 and changed.json()["replaced"] is True
    assert changed.json()["chunks"] == 1

    # The store now serves the new passage to retrieval.
    engine = make_engine(api.settings.effective_database_url)
    try:
        with session_scope(engine) as session:
            [hit] = search(session, collection=name, query="how fast are refunds", top_k=3)
            assert (hit.id, hit.text) == ("refunds.md#0", "All refunds take 2 days.")
    finally:
        engine.dispose()


async def test_ingest_raw_markdown_with_query_parameters(
    http: httpx.AsyncClient, keys: Keys, api: ApiServer
) -> None:
    name = collection()
    response = await http.post(
        f"/v1/knowledge/{name}/documents",
        params={"name": "guides/returns.md", "source": "https://help.example/returns"},
        content=(HELP_CENTER / "returns.md").read_bytes(),
        headers=bearer(keys.reviewer) | {"Content-Type": "text/markdown; charset=utf-8"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["document"]["name"] == "guides/returns.md"
    engine = make_engine(api.settings.effective_database_url)
    try:
        with session_scope(engine) as session:
            chunks = list_chunks(session, collection=name, document="guides/returns.md")
            assert chunks[1].title == "Returns and exchanges > Return window"
    finally:
        engine.dispose()
    listed = await http.get(f"/v1/knowledge/{name}/documents", headers=bearer(keys.service))
    assert listed.status_code == 200
    [doc] = listed.json()["items"]
    assert (doc["name"], doc["source"]) == ("guides/returns.md", "https://help.example/returns")

    deleted = await http.delete(
        f"/v1/knowledge/{name}/documents/guides/returns.md", headers=bearer(keys.reviewer)
    )
    assert deleted.status_code == 204
    again = await http.delete(
        f"/v1/knowledge/{name}/documents/guides/returns.md", headers=bearer(keys.reviewer)
    )
    assert_error(again, 404, "knowledge_document_not_found")


async def test_list_collections_with_counts(http: httpx.AsyncClient, keys: Keys) -> None:
    name = collection()
    for doc in ("refunds.md", "shipping.md"):
        text = (HELP_CENTER / doc).read_text(encoding="utf-8")
        response = await http.post(
            f"/v1/knowledge/{name}/documents",
            json={"name": doc, "text": text},
            headers=bearer(keys.reviewer),
        )
        assert response.status_code == 201
    listed = await http.get("/v1/knowledge", headers=bearer(keys.service))
    assert listed.status_code == 200
    [entry] = [c for c in listed.json()["items"] if c["name"] == name]
    assert (entry["documents"], entry["chunks"], entry["embedded_chunks"]) == (2, 14, 0)
    assert entry["embedding_alias"] is None

    configured = await http.put(
        f"/v1/knowledge/{name}", json={"embedding_alias": "embed"}, headers=bearer(keys.reviewer)
    )
    assert configured.status_code == 200, configured.text
    assert configured.json()["embedding_alias"] == "embed"
    unknown = await http.put(
        f"/v1/knowledge/{name}", json={"embedding_alias": "gpt-9"}, headers=bearer(keys.reviewer)
    )
    error = assert_error(unknown, 422, "unknown_model_alias")
    assert "embed" in error["details"]["known"]


async def test_roles_and_refusals(http: httpx.AsyncClient, keys: Keys) -> None:
    name = collection()
    url = f"/v1/knowledge/{name}/documents"
    doc = {"name": "a.md", "text": "# A\n\nText."}
    assert_error(await http.post(url, json=doc), 401, "unauthorized")
    assert_error(await http.post(url, json=doc, headers=bearer(keys.service)), 403, "forbidden")
    json_type = {"Content-Type": "application/json"}
    refusals: list[tuple[dict[str, Any], int, str | None]] = [
        ({"json": {"text": "no name"}}, 422, "invalid_document"),
        ({"json": {"name": "bad#name.md", "text": "x"}}, 422, "invalid_document"),
        ({"json": {"name": "a.md", "text": ""}}, 422, "invalid_document"),
        ({"json": {"name": "a.md", "text": "   \n"}}, 422, "invalid_document"),
        ({"json": {"name": "a.md", "text": "# Only a heading"}}, 422, "invalid_document"),
        ({"json": {"name": "a.md", "text": "nul \u0000 byte"}}, 422, "invalid_document"),
        (
            {"content": b'{"name": "a.md", "text": "\\ud800"}', "headers": json_type},
            422,
            "invalid_document",
        ),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422, None),
        ({"content": b"text", "headers": {"Content-Type": "text/plain"}}, 422, None),
        ({"content": b"\xff\xfe", "headers": {"Content-Type": "text/plain"}}, 422, None),
        ({"content": b"<a/>", "headers": {"Content-Type": "application/xml"}}, 415, None),
    ]
    for kwargs, status, code in refusals:
        headers = bearer(keys.reviewer) | kwargs.pop("headers", {})
        response = await http.post(url, headers=headers, **kwargs)
        assert_error(response, status, code)
    bad_collection = await http.post(
        "/v1/knowledge/bad name/documents", json=doc, headers=bearer(keys.reviewer)
    )
    assert_error(bad_collection, 422)
    missing = await http.get("/v1/knowledge/nope-nope/documents", headers=bearer(keys.service))
    assert_error(missing, 404, "knowledge_collection_not_found")
    # Nothing refused left anything behind, not even the collection.
    listed = await http.get("/v1/knowledge", headers=bearer(keys.service))
    assert name not in {c["name"] for c in listed.json()["items"]}

    ok = await http.post(url, json=doc, headers=bearer(keys.reviewer))
    assert ok.status_code == 201
    odd_name = await http.delete(f"{url}/a%00.md", headers=bearer(keys.reviewer))
    assert_error(odd_name, 404, "knowledge_document_not_found")
