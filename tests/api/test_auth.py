"""Bearer API keys and roles: who may do what, and how a refusal looks."""

from __future__ import annotations

import uuid

import httpx
import pytest

from core.settings import Settings
from tests.api.conftest import ADMIN_KEY, Keys, admin, assert_error, bearer

pytestmark = pytest.mark.usefixtures("api")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/runs"),
        ("POST", "/v1/runs"),
        ("GET", "/v1/runs/some-run"),
        ("GET", "/v1/approvals"),
        ("POST", "/v1/runs/some-run/approvals/review"),
        ("GET", "/v1/chains"),
        ("PUT", "/v1/chains/anything"),
        ("POST", "/v1/keys"),
        ("GET", "/v1/keys"),
        ("DELETE", "/v1/keys/someone"),
    ],
)
async def test_no_key_is_401_with_bearer_challenge(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(method, path, json={})
    error = assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in error["message"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer chorus_not-a-real-key-at-all-0000000000000000",
        "Bearer " + ADMIN_KEY[:-1],
        "Basic " + ADMIN_KEY,
        "Bearer",
    ],
)
async def test_unknown_key_or_scheme_is_401(http: httpx.AsyncClient, header: str) -> None:
    response = await http.get("/v1/chains", headers={"Authorization": header})
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_revoked_key_is_401(http: httpx.AsyncClient) -> None:
    name = f"temp-{uuid.uuid4().hex[:8]}"
    created = await http.post("/v1/keys", json={"name": name, "role": "service"}, headers=admin())
    assert created.status_code == 201
    key = created.json()["key"]
    assert (await http.get("/v1/runs", headers=bearer(key))).status_code == 200

    revoked = await http.delete(f"/v1/keys/{name}", headers=admin())
    assert revoked.status_code == 200 and revoked.json() == {"name": name, "revoked": True}

    assert_error(await http.get("/v1/runs", headers=bearer(key)), 401, "unauthorized")
    assert_error(await http.delete(f"/v1/keys/{name}", headers=admin()), 404, "key_not_found")


async def test_service_key_cannot_decide_approvals(http: httpx.AsyncClient, keys: Keys) -> None:
    response = await http.post(
        "/v1/runs/any-run/approvals/review",
        json={"decision": "approve", "payload_hash": "abc"},
        headers=bearer(keys.service),
    )
    error = assert_error(response, 403, "forbidden")
    assert "reviewer or admin" in error["message"]
    assert error["details"] == {"required_roles": ["reviewer", "admin"], "role": "service"}


async def test_reviewer_key_cannot_start_runs_publish_chains_or_manage_keys(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    reviewer = bearer(keys.reviewer)
    start = await http.post(
        "/v1/runs", json={"chain": "review_reply", "input": {"message": "hi"}}, headers=reviewer
    )
    assert "service or admin" in assert_error(start, 403, "forbidden")["message"]
    cancel = await http.post("/v1/runs/any-run/cancel", headers=reviewer)
    assert_error(cancel, 403, "forbidden")
    publish = await http.put(
        "/v1/chains/mine", json={"name": "mine", "steps": []}, headers=reviewer
    )
    assert "role admin" in assert_error(publish, 403, "forbidden")["message"]
    assert_error(await http.get("/v1/keys", headers=reviewer), 403, "forbidden")
    new_key = await http.post(
        "/v1/keys", json={"name": "sneaky", "role": "admin"}, headers=reviewer
    )
    assert_error(new_key, 403, "forbidden")


async def test_service_key_reads_but_cannot_publish(http: httpx.AsyncClient, keys: Keys) -> None:
    service = bearer(keys.service)
    assert (await http.get("/v1/chains", headers=service)).status_code == 200
    assert (await http.get("/v1/approvals", headers=service)).status_code == 200
    publish = await http.put("/v1/chains/mine", json={"name": "mine"}, headers=service)
    assert_error(publish, 403, "forbidden")


async def test_keys_are_listed_without_secrets_and_shown_once(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    name = f"lister-{uuid.uuid4().hex[:8]}"
    created = await http.post(
        "/v1/keys",
        json={"name": name, "role": "reviewer", "approval_roles": ["supervisor"]},
        headers=admin(),
    )
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith(body["key_prefix"]) and len(body["key"]) > 30
    assert body["role"] == "reviewer" and body["approval_roles"] == ["supervisor"]

    listing = await http.get("/v1/keys", headers=bearer(keys.admin))
    assert listing.status_code == 200
    [mine] = [k for k in listing.json()["items"] if k["name"] == name]
    assert "key" not in mine and "key_hash" not in mine
    assert body["key"] not in listing.text
    assert mine["key_prefix"] == body["key_prefix"] and mine["revoked_at"] is None


async def test_key_requests_are_validated(http: httpx.AsyncClient) -> None:
    name = f"dup-{uuid.uuid4().hex[:8]}"
    first = await http.post("/v1/keys", json={"name": name, "role": "service"}, headers=admin())
    assert first.status_code == 201
    again = await http.post("/v1/keys", json={"name": name, "role": "admin"}, headers=admin())
    assert name in assert_error(again, 409, "key_exists")["message"]

    bad_role = await http.post("/v1/keys", json={"name": "x1", "role": "root"}, headers=admin())
    error = assert_error(bad_role, 422, "invalid_request")
    assert error["details"][0]["path"] == "body.role"
    bad_name = await http.post(
        "/v1/keys", json={"name": "has space", "role": "service"}, headers=admin()
    )
    assert assert_error(bad_name, 422)["details"][0]["path"] == "body.name"


def test_placeholder_admin_key_is_refused_outside_development() -> None:
    for placeholder in ("changeme", "change-me-please", "CHANGEME", "short-key"):
        with pytest.raises(ValueError, match="CHORUS_ADMIN_KEY"):
            Settings(_env_file=None, admin_key=placeholder, environment="production")
    accepted = Settings(_env_file=None, admin_key=ADMIN_KEY, environment="production")
    assert accepted.admin_key is not None
    # Development accepts anything (the API logs a warning).
    assert Settings(_env_file=None, admin_key="changeme").admin_key is not None
