"""Declarative HTTP tools against a real HTTP service on 127.0.0.1: requests
built from templates, secrets read from the environment at call time and
never echoed, statuses translated into retryable or final errors."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from activities.tools.activities import ToolActivities
from activities.tools.defaults import DEFAULT_TOOLS_PATH, builtin_registry, default_registry
from activities.tools.errors import ToolDefinitionError
from activities.tools.http_tools import http_error, http_tools_from_dict, load_http_tools
from activities.tools.registry import ToolRegistry
from activities.tools.types import ToolErrorType
from core.settings import Settings
from tests.tools.conftest import ToolEnv, ToolService

ROOT = Path(__file__).resolve().parents[2]
TOKEN_ENV = "CHORUS_TEST_TOOL_TOKEN"


def tools(base_url: str) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "object"}
    return {
        "version": 1,
        "tools": {
            "track": {
                "description": "Track a parcel.",
                "base_url": base_url,
                "url": "/v1/track/{carrier}/{number}",
                "parameters": obj
                | {
                    "properties": {
                        "carrier": {"type": "string"},
                        "number": {"type": "string"},
                        "verbose": {"type": "boolean"},
                        "fields": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["carrier", "number"],
                    "additionalProperties": False,
                },
                "headers": {
                    "Authorization": {"env": TOKEN_ENV, "prefix": "Bearer "},
                    "X-Client": "chorus-tests",
                },
            },
            "status": {
                "description": "Answers the status it is asked for.",
                "url": base_url + "/status/{code}",
                "parameters": obj
                | {
                    "properties": {
                        "code": {"type": "integer"},
                        "retry_after": {"type": "string"},
                    },
                    "required": ["code"],
                },
                "headers": {"Authorization": {"env": TOKEN_ENV, "prefix": "Bearer "}},
            },
            "slow": {
                "description": "Slow.",
                "url": base_url + "/slow",
                "parameters": obj | {"properties": {"seconds": {"type": "number"}}},
                "timeout_s": 0.3,
            },
            "text": {"description": "Plain text.", "url": base_url + "/text"},
            "nowhere": {
                "description": "Nobody listens.",
                "url": f"http://127.0.0.1:{_free_port()}/x",
            },
        },
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def token(service: ToolService, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, service.token)
    return service.token


@pytest.fixture
def acts(tool_service: ToolService, http: httpx.AsyncClient) -> ToolActivities:
    registry = ToolRegistry()
    for tool in http_tools_from_dict(tools(tool_service.url)):
        registry.add(tool)
    return ToolActivities(registry, http)


async def test_get_fills_the_url_query_and_secret_header(
    acts: ToolActivities, env: ToolEnv, service: ToolService, token: str
) -> None:
    result = await env.run(
        acts, "track", carrier="UPS", number="1Z 99/A?#", verbose=True, fields=["eta", "scan"]
    )
    assert result.output["status"] == "in_transit"
    [seen] = service.seen
    assert seen.method == "GET"
    assert seen.path == "/v1/track/UPS/1Z%2099%2FA%3F%23"  # each value URL-encoded whole
    assert seen.query == {"verbose": ["true"], "fields": ["eta", "scan"]}
    assert seen.headers["Authorization"] == f"Bearer {token}"
    assert seen.headers["X-Client"] == "chorus-tests"
    assert seen.headers["Accept"] == "application/json"
    assert "Idempotency-Key" not in seen.headers  # a GET needs none unless given


async def test_the_secret_is_read_at_call_time(
    acts: ToolActivities, env: ToolEnv, service: ToolService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    missing = await env.fail(acts, "track", carrier="UPS", number="1")
    assert missing.type == ToolErrorType.CONFIG and missing.non_retryable
    assert TOKEN_ENV in missing.message and "'track'" in missing.message
    assert service.seen == []  # nothing was sent

    monkeypatch.setenv(TOKEN_ENV, "rotated-but-wrong")
    rejected = await env.fail(acts, "track", carrier="UPS", number="1")
    assert rejected.type == ToolErrorType.HTTP_ERROR and rejected.non_retryable
    assert "returned HTTP 401: bad credentials" in rejected.message
    assert "rotated-but-wrong" not in rejected.message

    monkeypatch.setenv(TOKEN_ENV, service.token)  # rotated: no restart needed
    assert (await env.run(acts, "track", carrier="UPS", number="1")).output["carrier"] == "UPS"


async def test_503_with_retry_after_is_retryable_after_the_delay(
    acts: ToolActivities, env: ToolEnv, service: ToolService, token: str
) -> None:
    with capture_logs() as logs:
        err = await env.fail(acts, "status", code=503, retry_after="2")
    assert err.type == ToolErrorType.HTTP_ERROR and not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=2)
    assert err.message.startswith(f"tool 'status': GET {service.url}/status/503 returned HTTP 503")
    assert "retry_after" not in err.message  # the query string stays out
    assert err.details == ({"tool": "status", "status": 503},)
    [failed] = [e for e in logs if e["event"] == "tool_call.failed"]
    assert failed["retry_in_s"] == 2.0 and failed["retryable"] is True


@pytest.mark.parametrize(("code", "retryable"), [(429, True), (500, True), (408, True)])
async def test_retryable_statuses(
    acts: ToolActivities, env: ToolEnv, token: str, code: int, retryable: bool
) -> None:
    err = await env.fail(acts, "status", code=code)
    assert err.type == ToolErrorType.HTTP_ERROR
    assert err.non_retryable is not retryable
    assert err.next_retry_delay is None


async def test_404_is_final_and_never_echoes_the_secret(
    acts: ToolActivities, env: ToolEnv, token: str
) -> None:
    with capture_logs() as logs:
        err = await env.fail(acts, "status", code=404)
    assert err.type == ToolErrorType.HTTP_ERROR and err.non_retryable
    assert err.next_retry_delay is None
    # The service echoed the Authorization header into its error body.
    assert "upstream said no" in err.message and "[redacted]" in err.message
    assert token not in err.message
    assert token not in str(err.details)
    assert token not in str(logs)


async def test_text_responses_and_timeouts_and_refused_connections(
    acts: ToolActivities, env: ToolEnv
) -> None:
    assert (await env.run(acts, "text")).output == "plain words"

    timeout = await env.fail(acts, "slow", seconds=1)
    assert timeout.type == ToolErrorType.TIMEOUT and not timeout.non_retryable

    refused = await env.fail(acts, "nowhere")
    assert refused.type == ToolErrorType.HTTP_ERROR and not refused.non_retryable
    assert "could not be reached (ConnectError" in refused.message


async def test_the_shipped_file_runs_against_a_service(
    service: ToolService,
    env: ToolEnv,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """chains/tools/http.yaml, configured only through the environment."""
    monkeypatch.setenv("CARRIER_API_URL", service.url)
    monkeypatch.setenv("CARRIER_API_TOKEN", service.token)
    monkeypatch.setenv("INVENTORY_API_URL", service.url + "/")
    monkeypatch.setenv("INVENTORY_API_KEY", service.api_key)
    registry = default_registry(Settings(tools_file=ROOT / "chains/tools/http.yaml"))
    acts = ToolActivities(registry, http)

    tracked = await env.run(acts, "carrier_status", carrier="FedEx", tracking_number="771234567890")
    assert tracked.output["path"] == "/v1/track/FedEx/771234567890"
    stock = await env.run(acts, "stock_check", sku="TNT-2P-ALP", quantity=2)
    assert stock.output["query"] == {"quantity": ["2"]}

    info = registry.describe("send_replacement")
    assert info.idempotent is False and info.requires_approval
    sent = await env.run(
        acts,
        "send_replacement",
        "ticket-9-replace",
        order_id="NW-1003",
        sku="JKT-RAIN-L",
        reason="torn",
    )
    assert sent.output["method"] == "POST"
    assert sent.output["path"] == "/v1/orders/NW-1003/replacements"
    assert sent.output["body"] == {"sku": "JKT-RAIN-L", "reason": "torn"}
    assert service.seen[-1].headers["Idempotency-Key"] == "ticket-9-replace"

    # POST without a key: the activity's own key, stable across its retries.
    await env.run(acts, "send_replacement", order_id="NW-1003", sku="JKT-RAIN-L", reason="torn")
    assert service.seen[-1].headers["Idempotency-Key"] == env.activity_key

    bad = await env.fail(acts, "stock_check", sku="tent", quantity=0, color="red")
    assert bad.type == ToolErrorType.INVALID_ARGUMENTS and bad.non_retryable
    assert bad.details[0]["problems"] == [
        "(arguments): Additional properties are not allowed ('color' was unexpected)",
        "quantity: 0 is less than the minimum of 1",
        "sku: 'tent' does not match '^[A-Z0-9-]{3,32}$'",
    ]

    monkeypatch.delenv("INVENTORY_API_URL")
    unset = await env.fail(acts, "stock_check", sku="TNT-2P-ALP")
    assert unset.type == ToolErrorType.CONFIG and "INVENTORY_API_URL" in unset.message


def test_default_registry_has_builtin_and_shipped_tools() -> None:
    registry = default_registry()
    assert DEFAULT_TOOLS_PATH.is_file()
    assert {"lookup_order", "issue_refund", "carrier_status", "send_replacement"} <= set(
        registry.names
    )
    assert Settings().tools_file == DEFAULT_TOOLS_PATH
    builtin_only = default_registry(SimpleNamespace(tools_file=None))
    assert "carrier_status" not in builtin_only and "lookup_order" in builtin_only


def test_statuses_translate_by_a_pure_rule() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    table = [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
        (422, False),
        (302, False),
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
    ]
    for status, retryable in table:
        err = http_error("t", "GET", "http://h/p?q=1", status, {"Retry-After": "3"}, b"", now=now)
        assert err.non_retryable is not retryable, status
        assert err.next_retry_delay == (timedelta(seconds=3) if retryable else None), status
        assert err.message == f"tool 't': GET http://h/p returned HTTP {status}: (empty body)"
    dated = http_error(
        "t", "GET", "http://h/p", 429, {"Retry-After": "Sat, 01 Mar 2025 12:00:10 GMT"}, "", now=now
    )
    assert dated.next_retry_delay == timedelta(seconds=10)
    scrubbed = http_error(
        "t",
        "GET",
        "http://h/p",
        500,
        {},
        '{"detail": "key s3cr3t-value!"}',
        secrets=["s3cr3t-value"],
    )
    assert scrubbed.message.endswith("HTTP 500: key [redacted]!")


BAD_FILES: list[tuple[Any, str]] = [
    ({"tools": {"t": {"url": "http://h/x"}}}, "tool 't', field 'description': Field required"),
    (
        {"tools": {"t": {"description": "d", "url": "http://h", "verb": 1}}},
        "tool 't', field 'verb': Extra inputs are not permitted",
    ),
    (
        {"tools": {"t": {"description": "d", "url": "http://h", "method": "TRACE"}}},
        "tool 't', field 'method'",
    ),
    (
        {"tools": {"t": {"description": "d", "url": "/relative"}}},
        "field 'url' must start with http:// or https://",
    ),
    (
        {"tools": {"t": {"description": "d", "url": "http://h/{id}"}}},
        "placeholder {id} must be a required property of 'parameters'",
    ),
    (
        {"tools": {"t": {"description": "d", "url": "http://h/{id!r}"}}},
        "must be a plain {name}",
    ),
    (
        {"tools": {"t": {"description": "d", "url": "http://h", "parameters": {"type": 5}}}},
        "field 'parameters' is not a valid JSON Schema",
    ),
    (
        {"tools": {"t": {"description": "d", "url": "http://h", "parameters": {"type": "array"}}}},
        "must be a schema of type 'object'",
    ),
    (
        {
            "tools": {
                "t": {
                    "description": "d",
                    "url": "http://h",
                    "headers": {"Authorization": {"env": "Bearer sk-live-123"}},
                }
            }
        },
        "must be the NAME of an environment variable",
    ),
    (
        {"tools": {"t": {"description": "d", "url": "http://h", "headers": {"Bad Header": "x"}}}},
        "'Bad Header' is not a valid HTTP header name",
    ),
    (
        {"tools": {"t": {"description": "d", "url": "http://h", "method": "POST", "query": ["q"]}}},
        "field 'query': 'q' is not a property of 'parameters'",
    ),
    (
        {"tools": {"bad name": {"description": "d", "url": "http://h"}}},
        "tool name 'bad name' must be 1-64 letters",
    ),
    ([], "expected a mapping at top level"),
]


@pytest.mark.parametrize(("data", "phrase"), BAD_FILES)
def test_bad_tool_files_are_refused_naming_the_problem(data: Any, phrase: str) -> None:
    with pytest.raises(ToolDefinitionError) as caught:
        http_tools_from_dict(data, source="tools.yaml")
    message = str(caught.value)
    assert message.startswith("invalid tools file tools.yaml")
    assert phrase in message
    assert "sk-live-123" not in message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ToolDefinitionError, match="cannot read tools file"):
        load_http_tools(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tools: [unclosed")
    with pytest.raises(ToolDefinitionError, match="is not valid YAML"):
        load_http_tools(broken)
    clash = tmp_path / "clash.yaml"
    clash.write_text("tools:\n  lookup_order: {description: d, url: 'http://h'}\n")
    with pytest.raises(ToolDefinitionError, match="lookup_order, already registered"):
        builtin_registry().load_http_file(clash)


def test_method_decides_idempotency_unless_the_file_says() -> None:
    def entry(method: str, **extra: Any) -> dict[str, Any]:
        return {"description": "d", "url": "http://h", "method": method, **extra}

    loaded = http_tools_from_dict(
        {
            "tools": {
                "get": entry("get"),
                "put": entry("PUT"),
                "delete": entry("DELETE"),
                "post": entry("POST"),
                "patch": entry("PATCH"),
                "keyed_post": entry("POST", idempotent=True),
            }
        }
    )
    assert {t.name: t.info.idempotent for t in loaded} == {
        "get": True,
        "put": True,
        "delete": True,
        "post": False,
        "patch": False,
        "keyed_post": True,
    }
