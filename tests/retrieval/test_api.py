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

from api.knowledge import upload_limit_bytes
from api.server import ApiServer
from store.engine import make_engine, session_scope
from store.knowledge.crud import list_chunks
from store.knowledge.lookup import MAX_QUERY_CHARS, MAX_TOP_K
from store.knowledge.search import DEFAULT_MIN_SCORE, search
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


# -- multipart uploads ------------------------------------------------------------------


def big_markdown(chars: int) -> str:
    """A markdown document of about `chars` characters, many sections."""
    parts = ["# Handbook\n\n"]
    size = len(parts[0])
    section = 0
    while size < chars:
        section += 1
        rule = f"Rule {section}: orders over {section} units need approval code A{section:05d}. "
        part = f"## Policy {section}\n\n{rule * 3}\n\n"
        parts.append(part)
        size += len(part)
    return "".join(parts)[:chars]


async def test_upload_a_document_over_the_json_body_limit(
    http: httpx.AsyncClient, keys: Keys, api: ApiServer
) -> None:
    name = collection()
    url = f"/v1/knowledge/{name}/files"
    text = big_markdown(1_900_000)
    data = text.encode()
    # Over the JSON body limit of a default API (1 MiB), let alone this one's.
    assert len(data) > 1024 * 1024 > api.settings.api_max_body_bytes

    files = {"file": ("handbook.md", data, "text/markdown")}
    created = await http.post(url, files=files, headers=bearer(keys.reviewer))
    assert created.status_code == 201, created.text
    document = created.json()["document"]
    assert (document["name"], document["title"], document["source"]) == (
        "handbook.md",
        "Handbook",
        "handbook.md",
    )
    assert created.json()["chunks"] > 1000
    same = await http.post(url, files=files, headers=bearer(keys.reviewer))
    assert same.status_code == 200 and same.json()["unchanged"] is True

    found = await http.get(
        f"/v1/knowledge/{name}/search",
        params={"q": "which approval code for policy 4207? A04207", "k": 1},
        headers=bearer(keys.service),
    )
    assert found.status_code == 200, found.text
    [top] = found.json()["passages"]
    assert top["id"] == f"handbook.md#{top['position']}" and "code A04207." in top["text"]


async def test_uploads_over_the_store_limit_are_413_naming_it(
    http: httpx.AsyncClient, keys: Keys, api: ApiServer
) -> None:
    name = collection()
    url = f"/v1/knowledge/{name}/files"
    limits = api.settings.input_limits
    over = big_markdown(limits.max_document_chars + 10).encode()
    too_long = await http.post(
        url, files={"file": ("big.md", over, "text/markdown")}, headers=bearer(keys.reviewer)
    )
    error = assert_error(too_long, 413, "document_too_large")
    assert f"{limits.max_document_chars:,}" in error["message"] and "'big.md'" in error["message"]
    assert error["details"]["max_document_chars"] == limits.max_document_chars

    limit = upload_limit_bytes(limits)
    head = (
        f"POST {url} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {keys.reviewer}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
    )
    # Declared over the limit: refused on the headers alone.
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    try:
        writer.write(f"{head}Content-Length: {limit + 1}\r\n\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413 ") and str(limit).encode() in answer

    # Chunked, one byte over the limit and never finished (no chunk end, no
    # last chunk): a 413 once the limit has passed, not the 408 an unfinished
    # body gets after the read timeout. Nothing is sent past that byte, so the
    # server has read everything when it closes (no reset to eat the answer).
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    try:
        writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n{limit + 1:x}\r\n".encode())
        block = b"x" * 65536
        for start in range(0, limit + 1, len(block)):
            writer.write(block[: min(len(block), limit + 1 - start)])
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=60)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413 ") and b"body_too_large" in answer
    listed = await http.get("/v1/knowledge", headers=bearer(keys.service))
    assert name not in {c["name"] for c in listed.json()["items"]}


async def test_upload_roles_refusals_bom_and_duplicates(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    name = collection()
    url = f"/v1/knowledge/{name}/files"
    refunds = {"file": ("refunds.md", REFUNDS.encode(), "text/markdown")}
    assert_error(await http.post(url, files=refunds), 401, "unauthorized")
    assert_error(await http.post(url, files=refunds, headers=bearer(keys.service)), 403)
    reviewer = bearer(keys.reviewer)
    refusals: list[tuple[dict[str, Any], int, str, str]] = [
        (
            {"files": {"name": (None, b"a.md")}},
            422,
            "invalid_document",
            "no file part named `file`",
        ),
        ({"data": {"name": "a.md"}}, 415, "unsupported_media_type", "not JSON"),
        (
            {"files": {"file": ("latin.md", "caf\xe9".encode("latin-1"))}},
            422,
            "invalid_document",
            "'latin.md' is not UTF-8 text: byte 0xe9 at offset 3",
        ),
        (
            {"files": {"file": ("bad name.md", b"# A\n\ntext")}},
            422,
            "invalid_document",
            "form.name",
        ),
        (
            {"files": refunds, "data": {"colour": "red"}},
            422,
            "invalid_document",
            "unknown form fields colour",
        ),
        ({"json": {"name": "a.md", "text": "x"}}, 415, "unsupported_media_type", "multipart"),
        (
            {"content": b"no parts", "headers": {"Content-Type": "multipart/form-data"}},
            422,
            "invalid_document",
            "Missing boundary",
        ),
        (
            {"files": {"file": ("a.md", b"# A\n\nx"), "extra": ("b.md", b"# B\n\ny")}},
            422,
            "invalid_document",
            "Too many files",
        ),
    ]
    for kwargs, status, code, message in refusals:
        headers = reviewer | kwargs.pop("headers", {})
        error = assert_error(await http.post(url, headers=headers, **kwargs), status, code)
        assert message in error["message"] or message in str(error["details"]), error

    bom = await http.post(
        url,
        files={"file": ("guide/refunds.md", b"\xef\xbb\xbf" + REFUNDS.encode())},
        data={"source": "https://help.example/refunds"},
        headers=reviewer,
    )
    assert bom.status_code == 201, bom.text
    document = bom.json()["document"]
    assert (document["name"], document["title"]) == ("refunds.md", "Refunds")
    assert document["source"] == "https://help.example/refunds"

    renamed = await http.post(
        url,
        files={"file": ("x.md", REFUNDS.encode())},
        data={"name": "money-back.md"},
        headers=reviewer,
    )
    error = assert_error(renamed, 409, "duplicate_document")
    assert error["details"] == {"document": "money-back.md", "same_content_as": "refunds.md"}
    as_json = await http.post(
        f"/v1/knowledge/{name}/documents",
        json={"name": "copy.md", "text": REFUNDS},
        headers=reviewer,
    )
    assert_error(as_json, 409, "duplicate_document")


async def test_prune_keeps_only_the_names_given(http: httpx.AsyncClient, keys: Keys) -> None:
    name = collection()
    reviewer = bearer(keys.reviewer)
    for doc in ("refunds.md", "shipping.md", "returns.md"):
        text = (HELP_CENTER / doc).read_text(encoding="utf-8")
        response = await http.post(
            f"/v1/knowledge/{name}/documents", json={"name": doc, "text": text}, headers=reviewer
        )
        assert response.status_code == 201
    url = f"/v1/knowledge/{name}/prune"
    body = {"keep": ["refunds.md", "returns.md", "not-there.md"]}
    assert_error(await http.post(url, json=body, headers=bearer(keys.service)), 403)
    pruned = await http.post(url, json=body, headers=reviewer)
    assert pruned.status_code == 200, pruned.text
    assert pruned.json() == {"collection": name, "removed": ["shipping.md"], "kept": 2}
    listed = await http.get(f"/v1/knowledge/{name}/documents", headers=bearer(keys.service))
    assert [d["name"] for d in listed.json()["items"]] == ["refunds.md", "returns.md"]
    again = await http.post(url, json=body, headers=reviewer)
    assert again.json()["removed"] == []
    missing = await http.post("/v1/knowledge/nope-nope/prune", json=body, headers=reviewer)
    assert_error(missing, 404, "knowledge_collection_not_found")
    assert_error(await http.post(url, json={"keep": "a.md"}, headers=reviewer), 422)


# -- search -----------------------------------------------------------------------------


async def test_search_returns_cited_scored_passages(http: httpx.AsyncClient, keys: Keys) -> None:
    name = collection()
    for doc in ("refunds.md", "shipping.md"):
        text = (HELP_CENTER / doc).read_text(encoding="utf-8")
        response = await http.post(
            f"/v1/knowledge/{name}/documents",
            json={"name": doc, "text": text},
            headers=bearer(keys.reviewer),
        )
        assert response.status_code == 201
    url = f"/v1/knowledge/{name}/search"
    response = await http.get(
        url, params={"q": "how long do refunds take", "k": 3}, headers=bearer(keys.service)
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["collection"], data["top_k"], data["ranking"]) == (name, 3, "fts")
    assert data["collection_ranking"] == "fts"
    passages = data["passages"]
    assert 1 <= len(passages) <= 3 and passages[0]["document"] == "refunds.md"
    assert passages[0]["id"] == f"refunds.md#{passages[0]['position']}"
    scores = [p["score"] for p in passages]
    assert scores == sorted(scores, reverse=True)
    default_k = await http.get(url, params={"q": "refund"}, headers=bearer(keys.service))
    assert (default_k.json()["top_k"], default_k.json()["min_score"]) == (5, DEFAULT_MIN_SCORE)

    # The retrieve step's minimum score applies unless asked otherwise.
    for question in ("how do I do this?", "quokka zeppelin"):
        nothing = await http.get(url, params={"q": question}, headers=bearer(keys.service))
        assert nothing.status_code == 200, nothing.text
        assert (nothing.json()["nothing_relevant"], nothing.json()["passages"]) == (True, [])
    # A threshold between the best and the worst score keeps only those over it.
    question = {"q": "how long do refunds take"}
    every = await http.get(url, params=question | {"min_score": 0}, headers=bearer(keys.service))
    scores = [p["score"] for p in every.json()["passages"]]
    assert every.json()["min_score"] == 0 and scores[0] > scores[-1]
    threshold = (scores[0] + scores[-1]) / 2
    kept = await http.get(
        url, params=question | {"min_score": threshold}, headers=bearer(keys.service)
    )
    over = [p for p in every.json()["passages"] if p["score"] >= threshold]
    assert kept.json()["passages"] == over and kept.json()["min_score"] == threshold

    configured = await http.put(
        f"/v1/knowledge/{name}", json={"embedding_alias": "embed"}, headers=bearer(keys.reviewer)
    )
    assert configured.status_code == 200
    hybrid = await http.get(url, params={"q": "refund"}, headers=bearer(keys.service))
    assert (hybrid.json()["ranking"], hybrid.json()["collection_ranking"]) == ("fts", "hybrid")


async def test_search_refusals(http: httpx.AsyncClient, keys: Keys) -> None:
    name = collection()
    response = await http.post(
        f"/v1/knowledge/{name}/documents",
        json={"name": "refunds.md", "text": REFUNDS},
        headers=bearer(keys.reviewer),
    )
    assert response.status_code == 201
    url = f"/v1/knowledge/{name}/search"
    reader = bearer(keys.service)
    assert_error(await http.get(url, params={"q": "refund"}), 401, "unauthorized")
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({}, "query.q", "Field required"),
        ({"q": ""}, "query.q", "the query is empty"),
        ({"q": "  "}, "query.q", "the query is empty"),
        ({"q": "?!"}, "query.q", "has no word to search for"),
        ({"q": "x" * (MAX_QUERY_CHARS + 1)}, "query.q", str(MAX_QUERY_CHARS)),
        ({"q": "refund\x00"}, "query.q", "NUL"),
        ({"q": "refund", "k": 0}, "query.k", "greater than or equal to 1"),
        ({"q": "refund", "k": MAX_TOP_K + 1}, "query.k", f"less than or equal to {MAX_TOP_K}"),
        ({"q": "refund", "k": "many"}, "query.k", "valid integer"),
        ({"q": "refund", "min_score": 1.5}, "query.min_score", "less than or equal to 1"),
        ({"q": "refund", "min_score": -1}, "query.min_score", "greater than or equal to 0"),
        ({"q": "refund", "min_score": "nan"}, "query.min_score", "min_score"),
        ({"q": "refund", "top": 3}, "query.top", "top"),
    ]
    for params, path, message in cases:
        error = assert_error(await http.get(url, params=params, headers=reader), 422)
        assert message in error["message"] or message in str(error["details"]), (params, error)
        assert path in str(error["details"]), (params, error)
    # A lone surrogate has no UTF-8 encoding: its would-be bytes are refused as
    # not UTF-8 (not searched as replacement characters), like Latin-1.
    for raw in ("refund%ED%A0%80", "caf%E9"):
        error = assert_error(await http.get(f"{url}?q={raw}", headers=reader), 422)
        assert error["code"] == "invalid_query" and "not UTF-8" in error["message"], error
    missing = await http.get("/v1/knowledge/nope-nope/search", params={"q": "x"}, headers=reader)
    assert_error(missing, 404, "knowledge_collection_not_found")
