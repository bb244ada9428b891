"""The codec server's protocol, auth and CORS, in process (httpx's ASGI
transport); tests/integration/test_encryption.py serves it with uvicorn to
the Temporal CLI."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from api.codec_server import CodecServerConfigError, create_codec_app
from core.converter import converter_for
from core.encryption import load_keyring, new_key

KEY_A, KEY_B = new_key(), new_key()
TOKEN = "codec-token-0123456789abcdef"
UI = "http://127.0.0.1:8233"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain(value: str) -> dict[str, Any]:
    return {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(f'"{value}"'.encode())}


@pytest.fixture
async def http() -> Any:
    app = create_codec_app(
        load_keyring(f"b:{KEY_B},a:{KEY_A}"), auth_token=TOKEN, cors_origins=[UI]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        yield client


async def test_encode_then_decode_round_trips_with_the_active_key(http: httpx.AsyncClient) -> None:
    encoded = await http.post("/encode", json={"payloads": [plain("hello")]}, headers=AUTH)
    assert encoded.status_code == 200
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encryption-key-id"]) == b"b"
    assert b"hello" not in base64.b64decode(sealed["data"])

    decoded = await http.post("/decode", json=encoded.json(), headers=AUTH)

    assert decoded.json() == {"payloads": [plain("hello")]}


async def test_decode_reads_what_a_worker_wrote_under_an_older_key(
    http: httpx.AsyncClient,
) -> None:
    [payload] = await converter_for(load_keyring(f"a:{KEY_A}")).encode(["ticket text"])
    body = {"payloads": [{"metadata": {k: b64(v) for k, v in payload.metadata.items()},
                          "data": b64(payload.data)}]}  # fmt: skip

    decoded = await http.post("/decode", json=body, headers=AUTH)

    assert decoded.json() == {"payloads": [plain("ticket text")]}


async def test_plain_payloads_pass_through(http: httpx.AsyncClient) -> None:
    answered = await http.post("/decode", json={"payloads": [plain("x")]}, headers=AUTH)
    assert answered.json() == {"payloads": [plain("x")]}


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 403), ({"Authorization": TOKEN}, 401)],
)
async def test_requests_without_the_token_are_refused(
    http: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    for path in ("/encode", "/decode"):
        answered = await http.post(path, json={"payloads": [plain("x")]}, headers=headers)
        assert answered.status_code == status
        assert "payloads" not in answered.json()
    if status == 401:
        assert answered.headers["www-authenticate"].startswith("Bearer")


async def test_the_token_may_travel_in_the_path_for_the_dev_ui(http: httpx.AsyncClient) -> None:
    ok = await http.post(f"/t/{TOKEN}/decode", json={"payloads": [plain("x")]})
    wrong = await http.post("/t/nope/decode", json={"payloads": [plain("x")]})
    assert (ok.status_code, wrong.status_code) == (200, 403)


async def test_cors_preflight_answers_the_ui_origin_only(http: httpx.AsyncClient) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }
    allowed = await http.options("/decode", headers={"Origin": UI, **preflight})
    other = await http.options("/decode", headers={"Origin": "http://evil.test", **preflight})

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers


async def test_a_payload_under_an_unknown_key_is_refused_by_name(http: httpx.AsyncClient) -> None:
    [payload] = await converter_for(load_keyring(f"old-2024:{new_key()}")).encode(["x"])
    body = {"payloads": [{"metadata": {k: b64(v) for k, v in payload.metadata.items()},
                          "data": b64(payload.data)}]}  # fmt: skip

    answered = await http.post("/decode", json=body, headers=AUTH)

    assert answered.status_code == 422
    assert "'old-2024'" in answered.json()["detail"]


async def test_a_malformed_body_is_a_400(http: httpx.AsyncClient) -> None:
    answered = await http.post(
        "/decode", content=b'{"payloads": 3}', headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answered.status_code == 400


def test_the_server_will_not_run_without_a_token() -> None:
    with pytest.raises(CodecServerConfigError, match="CHORUS_CODEC_AUTH_TOKEN"):
        create_codec_app(load_keyring(f"a:{KEY_A}"), auth_token="")
