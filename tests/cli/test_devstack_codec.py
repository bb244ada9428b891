"""`chorus dev` with encryption on: the stack starts the codec server and
points the embedded Temporal UI at it (real dev server and codec server
processes on free ports)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest

from cli.devstack.stack import DevStack
from core.converter import converter_for
from core.encryption import load_keyring, new_key
from tests.cli.test_devstack import free_port, stack_settings

KEY = new_key()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_the_dev_ui_decodes_through_the_stack_s_codec_server(tmp_path: Path) -> None:
    settings = stack_settings(
        tmp_path / "state", encryption_keys=f"dev:{KEY}", codec_server_port=free_port()
    )
    ui_origin = f"http://127.0.0.1:{settings.temporal_ui_port}"
    async with DevStack(settings, simulator=False, worker=False, api=False) as stack:
        assert set(stack.started) == {"temporal", "codec"}
        async with httpx.AsyncClient(timeout=10) as http:
            ui = (await http.get(f"{stack.ui_url}/api/v1/settings")).json()
            endpoint = ui["Codec"]["Endpoint"]
            assert endpoint.startswith(f"{stack.codec_url}/t/")

            [sealed] = await converter_for(load_keyring(f"dev:{KEY}")).encode(["ticket"])
            body = {"payloads": [{"metadata": {k: b64(v) for k, v in sealed.metadata.items()},
                                  "data": b64(sealed.data)}]}  # fmt: skip
            # what the UI sends: its origin and namespace, no token of its own
            headers = {"Origin": ui_origin, "X-Namespace": "default"}
            decoded = await http.post(f"{endpoint}/decode", json=body, headers=headers)
            refused = await http.post(f"{stack.codec_url}/decode", json=body, headers=headers)

    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-origin"] == ui_origin
    assert base64.b64decode(decoded.json()["payloads"][0]["data"]) == b'"ticket"'
    assert refused.status_code == 401
    assert not stack.started  # stopped what it started


def test_chorus_dev_prints_the_codec_server_only_when_encryption_is_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from cli import stack_commands

    printed = Console(file=io.StringIO(), width=400)
    monkeypatch.setattr(stack_commands, "console", printed)
    plain = stack_settings(tmp_path / "state")
    stack_commands._print_stack(DevStack(plain))
    assert "Codec server" not in printed.file.getvalue()  # type: ignore[attr-defined]

    encrypted = stack_settings(tmp_path / "state", encryption_keys=f"dev:{KEY}")
    stack_commands._print_stack(DevStack(encrypted))
    out = printed.file.getvalue()  # type: ignore[attr-defined]
    assert f"Codec server  {encrypted.codec_server_url}" in out
    assert KEY not in out
