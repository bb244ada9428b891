"""Every bad input gets a 4xx naming the problem, and nothing is stored or started.

A table of inputs that once answered 500 (or worse) — JSON nested thousands
of levels deep, a run input nested 500 deep, lone surrogates, NUL characters,
NaN, Infinity and 1e999, integers past 64 bits, oversized strings, a YAML
alias bomb — is sent to every endpoint that takes a body or a query: runs,
decisions, keys, chains (JSON and YAML), knowledge collections and documents.
Each must get its 4xx with the path and the problem named; then the run
index, the chain versions, the keys, the knowledge documents, the approval
audit and Temporal are as they were, the run waiting for a decision still
waits, and the API and the worker still serve a normal run. On SQLite and on
PostgreSQL (the `api` fixtures are parametrized by backend).

The API runs with smaller string and document limits than the defaults
(`CHORUS_INPUT_LIMITS`), so that oversized strings and documents fit under
the test server's 64 KiB body limit and reach the checks this test is about.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import Engine, text
from temporalio.testing import WorkflowEnvironment

from api.bodies import REFUSED_BODY, CheckedJsonRoute
from api.routes import approvals, chains, health, keys, knowledge, runs
from core.chain_spec import ChainSpec
from core.input_limits import InputLimits
from store import publish_chain, session_scope
from tests.api.conftest import (
    Keys,
    admin,
    assert_error,
    bearer,
    count_workflows,
    run_completed,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("api_worker")

LIMITS = InputLimits(max_string_chars=4096, max_input_bytes=16 * 1024, max_spec_bytes=32 * 1024)
COLLECTION = "bad-inputs"
CHAIN = "bad_inputs_greet"
BIG_CHAIN = "bad_inputs_big"
BAD = "@BAD@"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def api_overrides() -> dict[str, Any]:
    return {"input_limits": LIMITS}


# -- the bad values --------------------------------------------------------------------


@dataclass(frozen=True)
class BadValue:
    label: str
    json: str
    """The value as JSON text (what a client could send)."""
    code: str
    """The error code the API answers with."""
    says: str
    """What the message says about the problem."""
    at_field: bool = True
    """The answer names the field that holds it (False: the parser gave up
    before any field, so it names the whole body)."""


JSON_VALUES = [
    BadValue(
        "nested 5,000 deep", "[" * 5000 + "]" * 5000, "nesting_too_deep", "nested more than", False
    ),
    BadValue("nested 500 deep", "[" * 500 + "]" * 500, "nesting_too_deep", "nested more than 64"),
    BadValue("lone surrogate", '"a\\ud800b"', "invalid_character", "lone surrogate (\\ud800)"),
    BadValue("lone surrogate key", '{"\\udfff": 1}', "invalid_character", "lone surrogate"),
    BadValue("NUL", '"a\\u0000b"', "invalid_character", "NUL character"),
    BadValue("NaN", "NaN", "non_finite_number", "NaN is not a finite number"),
    BadValue("Infinity", "-Infinity", "non_finite_number", "-Infinity is not a finite number"),
    BadValue("1e999", "1e999", "non_finite_number", "Infinity is not a finite number"),
    BadValue("2^63", str(2**63), "integer_out_of_range", "64-bit range"),
    BadValue("-2^63 - 1", str(-(2**63) - 1), "integer_out_of_range", "64-bit range"),
    BadValue("30 digits", "9" * 30, "integer_out_of_range", "64-bit range"),
    # Past 4,300 digits Python refuses the conversion at once, before any path.
    BadValue("5,000 digits", "9" * 5000, "integer_out_of_range", "64-bit range", False),
    BadValue(
        "oversized string",
        json.dumps("x" * (LIMITS.max_string_chars + 1)),
        "string_too_long",
        f"the limit is {LIMITS.max_string_chars}",
    ),
]


# -- the endpoints ---------------------------------------------------------------------


@dataclass(frozen=True)
class JsonEndpoint:
    label: str
    method: str
    path: str
    key: str
    """Which key sends it (a Keys field)."""
    body: str
    """JSON text with @BAD@ where the bad value goes."""
    field: str
    """The path the answer names for the bad value."""
    code: str | None = None
    """The answer's code when the endpoint wraps the problem in its own
    (the problem's own code is then each detail's `type`)."""


def json_endpoints(context: dict[str, str]) -> list[JsonEndpoint]:
    spec = {
        "name": CHAIN,
        "description": BAD,
        "steps": [{"name": "hello", "kind": "model", "model": "cheap", "prompt": "Hi."}],
    }
    return [
        JsonEndpoint(
            "start a run",
            "POST",
            "/v1/runs",
            "service",
            f'{{"chain": "{CHAIN}", "input": {{"message": {BAD}}}}}',
            "body.input.message",
        ),
        JsonEndpoint(
            "decide an approval",
            "POST",
            f"/v1/runs/{context['run_id']}/approvals/{context['approval_id']}",
            "reviewer",
            f'{{"decision": "approve", "payload_hash": "{context["payload_hash"]}", '
            f'"comment": {BAD}}}',
            "body.comment",
        ),
        JsonEndpoint(
            "create a key",
            "POST",
            "/v1/keys",
            "admin",
            f'{{"name": "bad-{uuid.uuid4().hex[:6]}", "role": "reviewer", '
            f'"approval_roles": [{BAD}]}}',
            "body.approval_roles[0]",
        ),
        JsonEndpoint(
            "configure a collection",
            "PUT",
            f"/v1/knowledge/{COLLECTION}",
            "reviewer",
            f'{{"embedding_alias": {BAD}}}',
            "body.embedding_alias",
        ),
        JsonEndpoint(
            "ingest a document",
            "POST",
            f"/v1/knowledge/{COLLECTION}/documents",
            "reviewer",
            f'{{"name": "policy.md", "text": "# Policy", "source": {BAD}}}',
            "body.source",
            code="invalid_document",
        ),
        JsonEndpoint(
            "publish a chain (JSON)",
            "PUT",
            f"/v1/chains/{CHAIN}",
            "admin",
            json.dumps(spec).replace(f'"{BAD}"', BAD),
            "description",
            code="invalid_chain_spec",
        ),
    ]


ENDPOINT_LABELS = [
    "start a run",
    "decide an approval",
    "create a key",
    "configure a collection",
    "ingest a document",
    "publish a chain (JSON)",
]


# -- what exists before the table ------------------------------------------------------


@dataclass
class Baseline:
    context: dict[str, str]
    """The run waiting for a decision: run_id, approval_id, payload_hash."""
    rows: dict[str, int]
    workflows: int


TABLES = ("runs", "chain_versions", "api_keys", "approval_audit", "knowledge_documents")


def count_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in TABLES
        }


@pytest.fixture(scope="module")
async def baseline(
    http: httpx.AsyncClient,
    keys: Keys,
    db_engine: Engine,
    temporal_env: WorkflowEnvironment,
    api_task_queue: str,
) -> Baseline:
    """A published chain, a collection with one document, and a run of
    `review_reply` waiting for a decision; then the counts the table must
    leave as they are."""
    spec = {
        "name": CHAIN,
        "steps": [
            {
                "name": "hello",
                "kind": "model",
                "model": "cheap",
                "prompt": "Hi {{ input.message }}.",
            }
        ],
    }
    assert (await http.put(f"/v1/chains/{CHAIN}", json=spec, headers=admin())).status_code in (
        200,
        201,
    )
    # A chain stored before the limits existed, larger than they allow now.
    big = ChainSpec.model_validate(
        {
            "name": BIG_CHAIN,
            "steps": [
                {"name": f"s{i}", "kind": "model", "model": "cheap", "prompt": "p" * 300}
                for i in range(120)
            ],
        }
    )
    with session_scope(db_engine) as session:
        publish_chain(session, spec=big, created_by="before-the-limits")
    document = {"name": "refunds.md", "text": "# Refunds\n\nWithin 30 days."}
    ingested = await http.post(
        f"/v1/knowledge/{COLLECTION}/documents", json=document, headers=bearer(keys.reviewer)
    )
    assert ingested.status_code in (200, 201), ingested.text

    run_id = f"bad-inputs-{uuid.uuid4().hex[:8]}"
    started = await http.post(
        "/v1/runs",
        json={"chain": "review_reply", "run_id": run_id, "input": {"message": "Where is it?"}},
        headers=bearer(keys.service),
    )
    assert started.status_code == 201, started.text

    async def pending() -> dict[str, Any] | None:
        run = (await http.get(f"/v1/runs/{run_id}", headers=admin())).json()
        approvals = run.get("pending_approvals") or []
        return approvals[0] if approvals else None

    approval = await wait_for(pending, timeout_s=30)
    return Baseline(
        context={
            "run_id": run_id,
            "approval_id": approval["approval_id"],
            "payload_hash": approval["payload_hash"],
        },
        rows=count_rows(db_engine),
        workflows=await count_workflows(temporal_env.client, api_task_queue),
    )


def key_for(keys: Keys, label: str) -> str:
    return str(getattr(keys, label))


# -- the table -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint_label", ENDPOINT_LABELS)
async def test_every_bad_json_value_is_refused_naming_its_path(
    http: httpx.AsyncClient, keys: Keys, baseline: Baseline, endpoint_label: str
) -> None:
    endpoint = next(e for e in json_endpoints(baseline.context) if e.label == endpoint_label)
    for bad in JSON_VALUES:
        body = endpoint.body.replace(BAD, bad.json)
        response = await http.request(
            endpoint.method,
            endpoint.path,
            content=body.encode(),
            headers={**bearer(key_for(keys, endpoint.key)), "Content-Type": "application/json"},
        )
        where = f"{endpoint.label} with {bad.label}"
        error = assert_error(response, 422, endpoint.code or bad.code)
        detail = error["details"][0]
        assert bad.says in error["message"] and bad.says in detail["message"], (where, error)
        if endpoint.code is None or endpoint.code == "invalid_document":
            assert detail["type"] == bad.code, (where, error)
        if bad.at_field:
            assert detail["path"].startswith(endpoint.field), (where, error)
        # The answer is plain, encodable JSON that never echoes the value whole.
        assert len(response.content) < 2000, (where, len(response.content))


@pytest.mark.parametrize("endpoint_label", ENDPOINT_LABELS)
async def test_deep_json_without_a_json_content_type_is_refused_too(
    http: httpx.AsyncClient, keys: Keys, baseline: Baseline, endpoint_label: str
) -> None:
    """`curl -d` bodies (no type, or the form type) are read as JSON first
    (api.json_body): one nested past the parser's recursion limit once
    crashed that check (500)."""
    endpoint = next(e for e in json_endpoints(baseline.context) if e.label == endpoint_label)
    body = endpoint.body.replace(BAD, JSON_VALUES[0].json).encode()
    for content_type in ({}, {"Content-Type": "application/x-www-form-urlencoded"}):
        response = await http.request(
            endpoint.method,
            endpoint.path,
            content=body,
            headers={**bearer(key_for(keys, endpoint.key)), **content_type},
        )
        error = assert_error(response, 422, endpoint.code or "nesting_too_deep")
        assert "nested more than" in error["message"], (endpoint.label, content_type, error)
        unauthenticated = await http.request(
            endpoint.method, endpoint.path, content=body, headers=content_type
        )
        assert_error(unauthenticated, 401, "unauthorized")


def alias_bomb() -> str:
    """Nine levels of nine aliases: 350 bytes of YAML, 9^9 strings once expanded."""
    lines = [f"name: {CHAIN}", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    for previous, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    return "\n".join([*lines, "steps: []", ""])


YAML_BOMB = alias_bomb()


def yaml_prompt(prompt: str) -> str:
    return yaml_spec("x").replace("prompt: Hi.", f"prompt: '{prompt}'")


def yaml_spec(description: str) -> str:
    return (
        f"name: {CHAIN}\ndescription: {description}\n"
        "steps:\n  - name: hello\n    kind: model\n    model: cheap\n    prompt: Hi.\n"
    )


YAML_CASES: list[tuple[str, str, str]] = [
    ("alias bomb", YAML_BOMB, "with its aliases expanded"),
    ("recursive alias", f"name: {CHAIN}\nsteps: &s [*s]\n", "recursive alias"),
    ("flow nested 5,000 deep", yaml_spec("[" * 5000 + "]" * 5000), "nested more than 64"),
    (
        "block nested 1,500 deep",
        f"name: {CHAIN}\ndescription:\n  " + "- " * 1500 + "x\n",
        "nested more than 64",
    ),
    ("lone surrogate", yaml_spec('"a\\ud800b"'), "lone surrogate"),
    ("NUL", yaml_spec('"a\\0b"'), "NUL character"),
    ("impossible date", yaml_spec("2020-13-45"), "month must be in 1..12"),
    (
        "template nested 2,000 deep",
        yaml_prompt("{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"),
        "nested too deeply to parse",
    ),
    ("NaN", yaml_spec(".nan"), "NaN is not a finite number"),
    ("Infinity", yaml_spec("-.inf"), "-Infinity is not a finite number"),
    ("1.0e+999", yaml_spec("1.0e+999"), "Infinity is not a finite number"),
    ("2^63", yaml_spec(str(2**63)), "64-bit range"),
    ("5,000 digits", yaml_spec("9" * 5000), "64-bit range"),
    (
        "oversized string",
        yaml_spec("x" * (LIMITS.max_string_chars + 1)),
        f"the limit is {LIMITS.max_string_chars}",
    ),
    (
        "oversized spec",
        f"name: {CHAIN}\nsteps:\n"
        + "".join(
            f"  - {{name: s{i}, kind: model, model: cheap, prompt: '{'p' * 300}'}}\n"
            for i in range(120)
        ),
        f"the limit is {LIMITS.max_spec_bytes}",
    ),
]


@pytest.mark.parametrize("label,body,says", YAML_CASES, ids=[c[0] for c in YAML_CASES])
async def test_every_bad_yaml_spec_is_refused(
    http: httpx.AsyncClient, baseline: Baseline, label: str, body: str, says: str
) -> None:
    assert len(body.encode()) < 64 * 1024, label
    response = await http.put(
        f"/v1/chains/{CHAIN}",
        content=body.encode(),
        headers={**admin(), "Content-Type": "application/yaml"},
    )
    error = assert_error(response, 422, "invalid_chain_spec")
    assert says in error["message"], (label, error)
    assert len(response.content) < 2000, (label, len(response.content))


async def test_the_alias_bomb_is_tiny_and_refused_fast(
    http: httpx.AsyncClient, baseline: Baseline
) -> None:
    assert len(YAML_BOMB) < 600
    response = await http.put(
        f"/v1/chains/{CHAIN}",
        content=YAML_BOMB.encode(),
        headers={**admin(), "Content-Type": "application/yaml"},
    )
    assert_error(response, 422, "invalid_chain_spec")
    assert response.elapsed.total_seconds() < 1.0, response.elapsed


async def test_bad_queries_paths_and_fields_name_what_is_wrong(
    http: httpx.AsyncClient, keys: Keys, baseline: Baseline
) -> None:
    service, reviewer = bearer(keys.service), bearer(keys.reviewer)
    cases: list[tuple[str, str, dict[str, str], Any, str, str]] = [
        # (method, url, headers, JSON body or raw text, code, path)
        ("GET", "/v1/runs?chain=%00", service, None, "invalid_request", "query.chain"),
        ("GET", "/v1/runs?stauts=failed", service, None, "unknown_query_parameter", "query.stauts"),
        ("GET", "/v1/chains?x=%00", service, None, "unknown_query_parameter", "query.x"),
        ("GET", "/v1/runs?chain=a%ED%A0%80", service, None, "invalid_request", "query.chain"),
        ("GET", "/v1/approvals?chain=%00", reviewer, None, "invalid_request", "query.chain"),
        ("GET", "/v1/runs/a%00b", service, None, "invalid_request", "path.run_id"),
        ("POST", "/v1/runs/a%00b/cancel", service, None, "invalid_request", "path.run_id"),
        (
            "GET",
            f"/v1/chains/{CHAIN}?version={2**63}",
            service,
            None,
            "invalid_request",
            "query.version",
        ),
        (
            "GET",
            f"/v1/chains/{CHAIN}?version=NaN",
            service,
            None,
            "invalid_request",
            "query.version",
        ),
        (
            "POST",
            "/v1/runs",
            service,
            {"chain": CHAIN, "version": 2**63, "input": {}},
            "integer_out_of_range",
            "body.version",
        ),
        (
            "POST",
            "/v1/runs",
            service,
            {"chain": CHAIN, "version": 2**31, "input": {}},
            "invalid_request",
            "body.version",
        ),
        (
            "POST",
            "/v1/runs",
            service,
            f'{{"chain": "{CHAIN}", "input": {{}}, "max_cost_usd": 1e999}}',
            "non_finite_number",
            "body.max_cost_usd",
        ),
        (
            "POST",
            "/v1/runs",
            service,
            f'{{"chain": "{CHAIN}", "input": {{}}, "max_cost_usd": NaN}}',
            "non_finite_number",
            "body.max_cost_usd",
        ),
        (
            "POST",
            "/v1/runs",
            service,
            {"chain": CHAIN, "input": {"items": ["x" * 100] * 200}},
            "document_too_large",
            "input",
        ),
        # Stored before the limits: refused at start (it used to be a 503
        # "message larger than max" from Temporal), and no stub is left.
        ("POST", "/v1/runs", service, {"chain": BIG_CHAIN}, "document_too_large", "<document>"),
        ("DELETE", "/v1/keys/a%00b", admin(), None, "invalid_request", "path.name"),
    ]
    for method, url, headers, body, code, path in cases:
        kwargs: dict[str, Any] = {"headers": headers}
        if isinstance(body, str):
            kwargs = {"content": body.encode(), "headers": {**headers, **JSON}}
        elif body is not None:
            kwargs["json"] = body
        response = await http.request(method, url, **kwargs)
        error = assert_error(response, 422, code)
        assert error["details"][0]["path"].startswith(path), (method, url, error)


async def test_bad_text_documents_are_refused(
    http: httpx.AsyncClient, keys: Keys, baseline: Baseline
) -> None:
    reviewer = bearer(keys.reviewer)
    url = f"/v1/knowledge/{COLLECTION}/documents"
    cases = [
        ({"name": "a.md"}, "# Title\n\nA NUL \x00 here", "body", "NUL character"),
        ({"name": "a.md", "source": "x\x00y"}, "# Title", "query.source", "NUL character"),
        ({"name": "a.md", "title": "t" * 5000}, "# Title", "query.title", "the limit is"),
        ({"name": "a\x00.md"}, "# Title", "query.name", "NUL character"),
        ({"name": "a b.md"}, "# Title", "query.name", "should match pattern"),
    ]
    for params, body, path, says in cases:
        response = await http.post(
            url,
            params=params,
            content=body.encode(),
            headers={**reviewer, "Content-Type": "text/markdown"},
        )
        error = assert_error(response, 422, "invalid_document")
        assert error["details"][0]["path"].endswith(path), (params, error)
        assert says in error["message"] or says in error["details"][0]["message"], error


# -- authentication first --------------------------------------------------------------


@pytest.mark.parametrize("endpoint_label", ENDPOINT_LABELS)
async def test_a_bad_body_without_a_key_is_a_401_and_with_the_wrong_role_a_403(
    http: httpx.AsyncClient, keys: Keys, baseline: Baseline, endpoint_label: str
) -> None:
    endpoint = next(e for e in json_endpoints(baseline.context) if e.label == endpoint_label)
    bodies = [
        b"{chain:",
        endpoint.body.replace(BAD, JSON_VALUES[0].json).encode(),
        endpoint.body.replace(BAD, '"\\u0000"').encode(),
    ]
    wrong_role = {"service": keys.reviewer, "reviewer": keys.service, "admin": keys.reviewer}
    for body in bodies:
        for headers, status in (
            ({}, 401),
            (bearer("chorus_not-a-key-at-all"), 401),
            (bearer(wrong_role[endpoint.key]), 403),
        ):
            response = await http.request(
                endpoint.method,
                endpoint.path,
                content=body,
                headers={**headers, "Content-Type": "application/json"},
            )
            assert_error(response, status)
    unknown = await http.get("/v1/runs?stauts=failed")
    assert_error(unknown, 401, "unauthorized")
    yaml_bomb = await http.put(
        f"/v1/chains/{CHAIN}",
        content=YAML_BOMB.encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert_error(yaml_bomb, 401, "unauthorized")


# -- after the table -------------------------------------------------------------------


async def test_after_the_table_nothing_was_stored_and_a_normal_run_completes(
    http: httpx.AsyncClient,
    keys: Keys,
    db_engine: Engine,
    temporal_env: WorkflowEnvironment,
    api_task_queue: str,
    baseline: Baseline,
) -> None:
    assert count_rows(db_engine) == baseline.rows
    assert await count_workflows(temporal_env.client, api_task_queue) == baseline.workflows
    with db_engine.connect() as conn:
        stubs = conn.execute(text("SELECT count(*) FROM runs WHERE status = 'starting'"))
        assert stubs.scalar_one() == 0

    # The run that waited through the table still waits, and a good decision ends it.
    context = baseline.context
    run = (await http.get(f"/v1/runs/{context['run_id']}", headers=admin())).json()
    assert [a["approval_id"] for a in run["pending_approvals"]] == [context["approval_id"]], run
    decided = await http.post(
        f"/v1/runs/{context['run_id']}/approvals/{context['approval_id']}",
        json={"decision": "approve", "payload_hash": context["payload_hash"], "comment": "ok"},
        headers=bearer(keys.reviewer),
    )
    assert decided.status_code == 200, decided.text
    assert (await run_completed(http, context["run_id"]))["status"] == "completed"

    started = await http.post(
        "/v1/runs",
        json={"chain": CHAIN, "input": {"message": "Ada"}},
        headers=bearer(keys.service),
    )
    assert started.status_code == 201, started.text
    finished = await run_completed(http, started.json()["run_id"])
    assert finished["status"] == "completed" and finished["steps"]["hello"]["output"], finished


def test_every_json_body_refuses_the_placeholder_of_a_refused_body() -> None:
    """A refused body reaches the route as `api.bodies.REFUSED_BODY`: every
    route that takes a JSON body must refuse it (so the kept problem is the
    answer), never run with it."""
    bodies = [
        route
        for module in (approvals, chains, health, keys, knowledge, runs)
        for route in module.router.routes
        if isinstance(route, APIRoute) and route.body_field
    ]
    assert {route.path for route in bodies} >= {
        "/v1/runs",
        "/v1/runs/{run_id}/approvals/{approval_id}",
        "/v1/keys",
        "/v1/knowledge/{collection}",
    }
    for route in bodies:
        assert isinstance(route, CheckedJsonRoute), route.path
        field = route.body_field
        assert field is not None and field.field_info.is_required(), route.path
        _, errors = field.validate(REFUSED_BODY, {}, loc=("body",))
        assert errors, f"{route.path} accepts the placeholder of a refused body"
