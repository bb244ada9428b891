"""Bearer API keys and roles: who may do what, and how a refusal looks."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import Engine

from core.settings import Settings
from store import ApiKey, hash_api_key, session_scope
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


@pytest.mark.parametrize("name", ["bootstrap-admin", "Bootstrap-Admin", "BOOTSTRAP-ADMIN"])
async def test_the_bootstrap_admins_name_is_reserved(http: httpx.AsyncClient, name: str) -> None:
    for role in ("reviewer", "admin"):
        response = await http.post("/v1/keys", json={"name": name, "role": role}, headers=admin())
        error = assert_error(response, 409, "key_name_reserved")
        assert f"{name!r} is reserved" in error["message"] and error["details"] == {"name": name}
    listing = await http.get("/v1/keys", headers=admin())
    assert all(k["name"].lower() != "bootstrap-admin" for k in listing.json()["items"])


async def test_key_names_are_unique_ignoring_case(http: httpx.AsyncClient) -> None:
    name = f"Casey-{uuid.uuid4().hex[:8]}"
    first = await http.post("/v1/keys", json={"name": name, "role": "reviewer"}, headers=admin())
    assert first.status_code == 201
    other_case = name.lower()
    again = await http.post(
        "/v1/keys", json={"name": other_case, "role": "reviewer"}, headers=admin()
    )
    error = assert_error(again, 409, "key_exists")
    assert other_case in error["message"] and name in error["message"]
    assert error["details"] == {"name": other_case, "existing": name}


async def test_key_scopes_are_shown_and_checked(http: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    cases = [
        ({"role": "service"}, "own"),
        ({"role": "service", "scope": "all"}, "all"),
        ({"role": "reviewer", "scope": "own"}, "own"),
        ({"role": "admin"}, "all"),
    ]
    for i, (body, scope) in enumerate(cases):
        created = await http.post("/v1/keys", json={"name": f"s{i}-{tag}", **body}, headers=admin())
        assert created.status_code == 201 and created.json()["scope"] == scope, created.text
    listing = (await http.get("/v1/keys", headers=admin())).json()["items"]
    assert sorted(k["scope"] for k in listing if k["name"].endswith(tag)) == sorted(
        scope for _, scope in cases
    )

    admin_own = await http.post(
        "/v1/keys", json={"name": f"a-{tag}", "role": "admin", "scope": "own"}, headers=admin()
    )
    assert (
        "does not apply to an admin key" in assert_error(admin_own, 422, "invalid_key")["message"]
    )
    unknown = await http.post(
        "/v1/keys", json={"name": f"u-{tag}", "role": "service", "scope": "most"}, headers=admin()
    )
    assert assert_error(unknown, 422, "invalid_request")["details"][0]["path"] == "body.scope"


async def test_a_stored_key_under_the_bootstrap_name_is_refused(
    http: httpx.AsyncClient, db_engine: Engine
) -> None:
    """A key made before the name was reserved would act as the bootstrap
    admin in the audit log: it stops working, and says how to replace it."""
    plaintext = f"chorus_{uuid.uuid4().hex}{uuid.uuid4().hex}"
    with session_scope(db_engine) as session:
        session.add(
            ApiKey(
                name="Bootstrap-Admin",
                role="reviewer",
                key_prefix=plaintext[:12],
                key_hash=hash_api_key(plaintext),
            )
        )
    response = await http.get("/v1/approvals", headers=bearer(plaintext))
    error = assert_error(response, 401, "unauthorized")
    assert (
        "reserved name" in error["message"]
        and "DELETE /v1/keys/Bootstrap-Admin" in error["message"]
    )
    revoked = await http.delete("/v1/keys/Bootstrap-Admin", headers=admin())
    assert revoked.status_code == 200


def test_placeholder_admin_key_is_refused_outside_development() -> None:
    for placeholder in ("changeme", "change-me-please", "CHANGEME", "short-key"):
        with pytest.raises(ValueError, match="CHORUS_ADMIN_KEY"):
            Settings(_env_file=None, admin_key=placeholder, environment="production")
    accepted = Settings(_env_file=None, admin_key=ADMIN_KEY, environment="production")
    assert accepted.admin_key is not None
    # Development accepts anything (the API logs a warning).
    assert Settings(_env_file=None, admin_key="changeme").admin_key is not None
