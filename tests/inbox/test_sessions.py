"""The inbox's session rules over plain HTTP: cookie flags, security headers,
expiry, sign-out and revoked keys ending a session, CSRF and origin checks,
and no open redirect after sign-in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine, update
from sqlmodel import select

from api.server import ApiServer
from store import session_scope
from store.inbox_sessions import InboxSession, hash_token
from store.models import utcnow
from tests.api.conftest import ADMIN_KEY, Keys, admin

pytestmark = pytest.mark.usefixtures("api")

COOKIE = "chorus_inbox_session"


@asynccontextmanager
async def signed_in(api: ApiServer, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding an inbox session cookie for `key`."""
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        response = await client.post("/inbox/sign-in", data={"key": key})
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/inbox"
        yield client


async def test_sign_in_sets_an_httponly_strict_cookie_and_stores_only_its_hash(
    api: ApiServer, keys: Keys, db_engine: Engine
) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.post("/inbox/sign-in", data={"key": keys.reviewer})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    token = response.cookies[COOKIE]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/inbox" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP here
    assert keys.reviewer not in cookie
    with session_scope(db_engine) as session:
        rows = session.exec(select(InboxSession)).all()
        assert any(row.token_hash == hash_token(token) for row in rows)
        assert all(token not in (row.token_hash, row.csrf_token) for row in rows)
        [mine] = [row for row in rows if row.token_hash == hash_token(token)]
        assert timedelta(hours=11) < mine.expires_at - utcnow() <= timedelta(hours=12)


async def test_the_cookie_is_secure_when_the_request_came_over_https(
    api: ApiServer, keys: Keys
) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (a TLS proxy in front).
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.post(
            "/inbox/sign-in", data={"key": keys.reviewer}, headers={"X-Forwarded-Proto": "https"}
        )
    assert response.status_code == 303
    assert "secure" in {p.strip().lower() for p in response.headers["set-cookie"].split(";")}


@pytest.mark.parametrize("path", ["/inbox/sign-in", "/inbox", "/inbox/static/inbox.js"])
async def test_every_inbox_answer_carries_the_security_headers(
    http: httpx.AsyncClient, path: str
) -> None:
    response = await http.get(path)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    if not path.startswith("/inbox/static"):
        assert response.headers["cache-control"] == "no-store"


async def test_the_api_answers_keep_their_own_headers(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert "content-security-policy" not in response.headers


async def test_a_service_key_and_an_unknown_key_are_refused(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    service = await http.post("/inbox/sign-in", data={"key": keys.service})
    assert service.status_code == 403 and "is a service key" in service.text
    assert COOKIE not in service.cookies
    unknown = await http.post("/inbox/sign-in", data={"key": "chorus_" + "x" * 40})
    assert unknown.status_code == 401 and "unknown or has been revoked" in unknown.text
    empty = await http.post("/inbox/sign-in", data={"key": ""})
    assert empty.status_code == 401 or empty.status_code == 403
    assert "Enter your API key" in empty.text


async def test_the_bootstrap_admin_key_signs_in(api: ApiServer) -> None:
    async with signed_in(api, ADMIN_KEY) as client:
        page = await client.get("/inbox")
    assert page.status_code == 200 and "bootstrap-admin" in page.text


async def test_an_expired_session_goes_back_to_sign_in(
    api: ApiServer, keys: Keys, db_engine: Engine
) -> None:
    async with signed_in(api, keys.reviewer) as client:
        assert (await client.get("/inbox")).status_code == 200
        token = client.cookies[COOKIE]
        with session_scope(db_engine) as session:
            session.exec(  # type: ignore[call-overload]
                update(InboxSession)
                .where(InboxSession.token_hash == hash_token(token))  # type: ignore[arg-type]
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        response = await client.get("/inbox/runs/some-run/approvals/review")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/inbox/sign-in?next=")
        poll = await client.get("/inbox/items")
        assert poll.status_code == 401 and poll.json() == {"signed_in": False}


async def test_revoking_the_key_ends_its_sessions(api: ApiServer, http: httpx.AsyncClient) -> None:
    name = f"temp-reviewer-{uuid.uuid4().hex[:6]}"
    created = await http.post("/v1/keys", json={"name": name, "role": "reviewer"}, headers=admin())
    assert created.status_code == 201
    async with signed_in(api, created.json()["key"]) as client:
        assert (await client.get("/inbox")).status_code == 200
        revoked = await http.delete(f"/v1/keys/{name}", headers=admin())
        assert revoked.status_code in (200, 204), revoked.text
        response = await client.get("/inbox")
        assert response.status_code == 303
        assert response.headers["location"] == "/inbox/sign-in"


async def test_sign_out_ends_the_session_on_the_server(api: ApiServer, keys: Keys) -> None:
    async with signed_in(api, keys.reviewer) as client:
        token = client.cookies[COOKIE]
        page = await client.get("/inbox")
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        out = await client.post("/inbox/sign-out", data={"csrf_token": csrf})
        assert out.status_code == 303
        assert (
            'chorus_inbox_session=""' in out.headers["set-cookie"]
            or "Max-Age=0" in (out.headers["set-cookie"])
        )
    # The old cookie, replayed, opens nothing.
    async with httpx.AsyncClient(base_url=api.url, cookies={COOKIE: token}) as replay:
        assert (await replay.get("/inbox")).status_code == 303


async def test_posts_need_the_csrf_token_and_this_origin(api: ApiServer, keys: Keys) -> None:
    async with signed_in(api, keys.reviewer) as client:
        page = await client.get("/inbox")
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        url = "/inbox/runs/some-run/approvals/review/decide"
        form = {"decision": "approve", "payload_hash": "x"}
        assert (await client.post(url, data=form)).status_code == 403
        wrong = await client.post(url, data={**form, "csrf_token": csrf + "x"})
        assert wrong.status_code == 403
        cross = await client.post(
            url, data={**form, "csrf_token": csrf}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403 and "another site" in cross.text
        fetch_site = await client.post(
            "/inbox/sign-out", data={"csrf_token": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert fetch_site.status_code == 403
        # With the token, the request reaches the workflow (no such run here).
        sent = await client.post(url, data={**form, "csrf_token": csrf})
        assert sent.status_code == 404
        not_form = await client.post(url, json={**form, "csrf_token": csrf})
        assert not_form.status_code == 400


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example", "/v1/keys", "/inbox/../v1/keys"]
)
async def test_sign_in_goes_nowhere_but_the_inbox(api: ApiServer, keys: Keys, target: str) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.post("/inbox/sign-in", data={"key": keys.reviewer, "next": target})
    assert response.status_code == 303 and response.headers["location"] == "/inbox"


async def test_bad_paths_and_filters_are_clear_4xx(api: ApiServer, keys: Keys) -> None:
    async with signed_in(api, keys.reviewer) as client:
        bad_id = await client.get("/inbox/runs/bad%20id!/approvals/review")
        assert 400 <= bad_id.status_code < 500
        unknown = await client.get("/inbox/runs/no-such-run/approvals/review")
        assert unknown.status_code == 404 and "Not found" in unknown.text
        odd = await client.get("/inbox", params={"chain": "<script>", "status": "whatever"})
        assert odd.status_code == 200 and "<script>" not in odd.text
