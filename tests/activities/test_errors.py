"""The HTTP → Temporal error translator, rule by rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from activities.gateway.errors import (
    connection_error,
    parse_retry_after,
    redact,
    timeout_error,
    translate_http_error,
)
from activities.gateway.types import ProviderErrorType as T
from core.redaction import register_secret

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def openai_body(message: str, code: str | None = None, type_: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}
    ).encode()


def anthropic_body(type_: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": type_, "message": message}}).encode()


# provider, status, headers, body, expected type, retryable, expected delay (s)
CASES = [
    # retryable statuses
    ("openai", 408, {}, "timeout", T.SERVER_ERROR, True, None),
    ("openai", 409, {}, openai_body("conflict"), T.SERVER_ERROR, True, None),
    (
        "openai",
        429,
        {"Retry-After": "2"},
        openai_body("Rate limit reached for gpt-4o-mini on tokens per min", "rate_limit_exceeded"),
        T.RATE_LIMITED,
        True,
        2.0,
    ),
    ("openai", 429, {}, openai_body("slow down"), T.RATE_LIMITED, True, None),
    (
        "openai",
        500,
        {},
        openai_body("server had an error", type_="server_error"),
        T.SERVER_ERROR,
        True,
        None,
    ),
    ("openai", 502, {"retry-after": "7"}, "<html>bad gateway</html>", T.SERVER_ERROR, True, 7.0),
    ("openai", 503, {"Retry-After": "3"}, openai_body("overloaded"), T.OVERLOADED, True, 3.0),
    (
        "anthropic",
        529,
        {"retry-after": "10"},
        anthropic_body("overloaded_error", "Overloaded"),
        T.OVERLOADED,
        True,
        10.0,
    ),
    (
        "anthropic",
        429,
        {"retry-after": "1"},
        anthropic_body(
            "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
        ),
        T.RATE_LIMITED,
        True,
        1.0,
    ),
    # non-retryable statuses
    (
        "openai",
        400,
        {},
        openai_body("Invalid 'messages'", "invalid_value"),
        T.BAD_REQUEST,
        False,
        None,
    ),
    ("openai", 422, {"Retry-After": "5"}, '{"detail": "bad field"}', T.BAD_REQUEST, False, None),
    (
        "openai",
        401,
        {},
        openai_body("Incorrect API key provided", "invalid_api_key"),
        T.AUTH,
        False,
        None,
    ),
    (
        "anthropic",
        403,
        {},
        anthropic_body("permission_error", "no access"),
        T.FORBIDDEN,
        False,
        None,
    ),
    (
        "openai",
        404,
        {},
        openai_body("The model `gpt-9` does not exist", "model_not_found"),
        T.NOT_FOUND,
        False,
        None,
    ),
    ("openai", 405, {}, "method not allowed", T.BAD_REQUEST, False, None),
    # quota / spend limit: a 429 that will not go away by waiting
    (
        "openai",
        429,
        {"Retry-After": "20"},
        openai_body(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        T.QUOTA,
        False,
        None,
    ),
    (
        "openai",
        429,
        {},
        openai_body("Billing hard limit has been reached", "billing_hard_limit_reached"),
        T.QUOTA,
        False,
        None,
    ),
    (
        "openai",
        429,
        {},
        openai_body("You have hit your monthly spend limit."),
        T.QUOTA,
        False,
        None,
    ),
    (
        "anthropic",
        400,
        {},
        anthropic_body(
            "invalid_request_error", "Your credit balance is too low to access the Anthropic API."
        ),
        T.QUOTA,
        False,
        None,
    ),
    ("openai", 402, {}, '{"error": {"message": "Payment required"}}', T.QUOTA, False, None),
    # context length
    (
        "openai",
        400,
        {},
        openai_body(
            "This model's maximum context length is 128000 tokens. "
            "However, your messages resulted in 130000 tokens.",
            "context_length_exceeded",
            "invalid_request_error",
        ),
        T.CONTEXT_LENGTH,
        False,
        None,
    ),
    (
        "anthropic",
        400,
        {},
        anthropic_body(
            "invalid_request_error", "prompt is too long: 208000 tokens > 200000 maximum"
        ),
        T.CONTEXT_LENGTH,
        False,
        None,
    ),
    # vLLM says it in prose only
    (
        "openai",
        400,
        {},
        '{"object": "error", "message": "This model\'s maximum context length is 4096 tokens."}',
        T.CONTEXT_LENGTH,
        False,
        None,
    ),
    # content policy
    (
        "openai",
        400,
        {},
        openai_body("Your request was rejected by our safety system", "content_policy_violation"),
        T.REFUSED,
        False,
        None,
    ),
    (
        "openai",
        400,
        {},
        openai_body("The response was filtered", "content_filter"),
        T.REFUSED,
        False,
        None,
    ),
]


@pytest.mark.parametrize(
    ("provider", "status", "headers", "body", "error_type", "retryable", "delay_s"), CASES
)
def test_translation_table(
    provider: str,
    status: int,
    headers: dict[str, str],
    body: bytes | str,
    error_type: str,
    retryable: bool,
    delay_s: float | None,
) -> None:
    err = translate_http_error(provider, status, headers, body, alias="cheap", now=NOW)
    assert err.type == error_type
    assert err.non_retryable is (not retryable)
    if delay_s is None:
        assert err.next_retry_delay is None
    else:
        assert err.next_retry_delay == timedelta(seconds=delay_s)
    assert provider in err.message
    assert "'cheap'" in err.message
    assert f"HTTP {status}" in err.message
    assert err.details[0]["status"] == status


def test_message_carries_provider_text_and_code() -> None:
    err = translate_http_error(
        "openai", 404, {}, openai_body("The model `gpt-9` does not exist", "model_not_found")
    )
    assert (
        err.message
        == "openai returned HTTP 404 [model_not_found]: The model `gpt-9` does not exist"
    )


def test_message_is_truncated() -> None:
    err = translate_http_error("openai", 400, {}, openai_body("x" * 5000))
    assert len(err.message) < 700
    assert err.message.endswith("…")


def test_message_never_carries_a_key() -> None:
    body = openai_body(
        "Incorrect API key provided: sk-proj-abcdEFGH1234****wxyz. You can find your key at",
        "invalid_api_key",
    )
    err = translate_http_error("openai", 401, {}, body, alias="gpt")
    assert "sk-proj" not in err.message
    assert "abcdEFGH1234" not in err.message
    assert "[redacted]" in err.message
    assert "Bearer abc" not in redact("echo: Authorization: Bearer abcdefghijklmnop")


def test_message_never_echoes_a_key_the_worker_read_whatever_its_shape() -> None:
    key = "canary-unshaped-provider-key-4d2e"  # no sk-, no Bearer: only known by value
    register_secret(key)
    body = anthropic_body("authentication_error", f"invalid x-api-key: {key}")
    err = translate_http_error("anthropic", 401, {}, body, alias="claude")
    assert key not in err.message
    assert "invalid x-api-key: [redacted]" in err.message
    assert key not in connection_error("openai", "gpt", OSError(f"refused {key}")).message


def test_plain_text_and_empty_bodies() -> None:
    assert (
        "upstream connect error"
        in translate_http_error("simulator", 503, {}, b"upstream connect error").message
    )
    assert "(empty body)" in translate_http_error("simulator", 500, {}, b"").message


def test_retryable_5xx_honours_retry_after_http_date() -> None:
    headers = {"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}
    err = translate_http_error("openai", 503, headers, "", now=NOW)
    assert err.next_retry_delay == timedelta(seconds=30)


class TestParseRetryAfter:
    def test_seconds(self) -> None:
        assert parse_retry_after({"Retry-After": "2"}) == timedelta(seconds=2)
        assert parse_retry_after({"retry-after": " 1.5 "}) == timedelta(seconds=1.5)

    def test_http_date(self) -> None:
        headers = {"Retry-After": "Thu, 01 Jan 2026 12:01:00 GMT"}
        assert parse_retry_after(headers, now=NOW) == timedelta(minutes=1)

    def test_http_date_in_the_past_means_now(self) -> None:
        headers = {"Retry-After": "Thu, 01 Jan 2026 11:00:00 GMT"}
        assert parse_retry_after(headers, now=NOW) == timedelta(0)

    def test_milliseconds_win(self) -> None:
        headers = {"retry-after-ms": "250", "Retry-After": "2"}
        assert parse_retry_after(headers) == timedelta(milliseconds=250)

    def test_httpx_headers_are_case_insensitive(self) -> None:
        headers = httpx.Headers({"Retry-After-Ms": "1500"})
        assert parse_retry_after(headers) == timedelta(seconds=1.5)

    @pytest.mark.parametrize("value", ["soon", "-3", "", "inf", "nan", "1e400", "Mon, 99 Foo"])
    def test_garbage_is_ignored(self, value: str) -> None:
        assert parse_retry_after({"Retry-After": value}) is None
        assert parse_retry_after({"retry-after-ms": value}) is None

    def test_bad_ms_falls_back_to_seconds(self) -> None:
        assert parse_retry_after({"retry-after-ms": "x", "retry-after": "4"}) == timedelta(
            seconds=4
        )

    def test_absent(self) -> None:
        assert parse_retry_after({}) is None


def test_timeout_and_connection_errors_are_retryable() -> None:
    t = timeout_error("openai", "cheap", httpx.ReadTimeout("timed out"), 30)
    assert t.type == T.TIMEOUT and not t.non_retryable
    assert "30 s" in t.message and "ReadTimeout" in t.message and "'cheap'" in t.message
    c = connection_error(
        "anthropic", "strong", httpx.ConnectError("[Errno 111] Connection refused")
    )
    assert c.type == T.CONNECTION and not c.non_retryable
    assert "Connection refused" in c.message and "anthropic" in c.message
