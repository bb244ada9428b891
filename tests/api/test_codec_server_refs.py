"""The codec server and large payloads by reference: decoding a reference
(as the Temporal UI asks for one) answers the real payload, decrypted; a
reference whose blob is gone is refused with 422 naming its digest."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api.codec_server import codec_app_from_settings, create_codec_app
from core.converter import converter_for
from core.encryption import load_keyring, new_key
from core.payload_refs import REF_ENCODING, FilesystemBlobStore, PayloadRefCodec
from core.settings import Settings

KEY = new_key()
TOKEN = "codec-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BIG = "a long retrieved manual " * 2000


def as_json(payloads: list[Any]) -> dict[str, Any]:
    return json_format.MessageToDict(Payloads(payloads=payloads))


async def decode(app: Any, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        return await client.post("/decode", json=body, headers=AUTH)


async def test_decoding_a_reference_answers_the_real_payload(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "payloads")
    worker = converter_for(load_keyring(f"k:{KEY}"), PayloadRefCodec(store, threshold=1024))
    [ref] = await worker.encode([{"context": BIG}])
    assert ref.metadata["encoding"] == REF_ENCODING
    settings = Settings(
        encryption_keys=f"k:{KEY}",
        codec_auth_token=TOKEN,
        payload_store="filesystem",
        payload_store_dir=store.root,
        state_dir=tmp_path,
        _env_file=None,  # type: ignore[call-arg]
    )

    answered = await decode(codec_app_from_settings(settings), as_json([ref]))

    assert answered.status_code == 200, answered.text
    [payload] = answered.json()["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    assert BIG in base64.b64decode(payload["data"]).decode()


async def test_a_reference_to_a_missing_blob_is_refused_naming_it(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "payloads")
    [ref] = await converter_for(load_keyring(None), PayloadRefCodec(store, threshold=1024)).encode(
        [BIG]
    )
    digest = ref.metadata["chorus-ref-sha256"].decode()
    store.delete(digest)
    app = create_codec_app(
        load_keyring(None), auth_token=TOKEN, refs=PayloadRefCodec(store, threshold=1024)
    )

    answered = await decode(app, as_json([ref]))

    assert answered.status_code == 422
    assert f"sha256:{digest}" in answered.json()["detail"]
