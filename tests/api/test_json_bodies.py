"""JSON bodies without a JSON Content-Type, and the README's curl examples run
as written (with real curl) against the API, its worker and Temporal.

`curl -d` labels a body `application/x-www-form-urlencoded`; a JSON body so
labelled, or not labelled at all, is read as JSON, and anything else is a
415 that names the problem.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.server import ApiServer
from tests.api.conftest import (
    ADMIN_KEY,
    Keys,
    admin,
    assert_error,
    bearer,
    run_completed,
    wait_for,
)

pytestmark = [
    pytest.mark.usefixtures("api_worker"),
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True, scope="module"),
]

README = Path(__file__).resolve().parents[2] / "README.md"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def readme_curl_commands(text: str) -> list[str]:
    """Every `curl` command of the README's shell blocks, continuation lines joined."""
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [
            line.strip() for line in joined.splitlines() if line.lstrip().startswith("curl ")
        ]
    return commands


async def run_curl(command: str, env: dict[str, str]) -> tuple[int, str]:
    """Run a README command through bash; curl also prints the status on a last line."""
    script = f"curl() {{ command curl -sS -w '\\n%{{http_code}}' \"$@\"; }}\n{command}\n"
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, f"{command}\n{err.decode()}"
    body, _, status = out.decode().rpartition("\n")
    return int(status), body


def test_readme_has_the_examples() -> None:
    commands = readme_curl_commands(README.read_text(encoding="utf-8"))
    posts = [c for c in commands if " -d " in c]
    assert len(commands) >= 5 and len(posts) >= 2, commands


async def test_readme_curl_examples_work_as_written(
    api: ApiServer, http: httpx.AsyncClient, keys: Keys
) -> None:
    run_id = f"ticket-42-{uuid.uuid4().hex[:8]}"
    env = {
        "SERVICE_KEY": keys.service,
        "REVIEWER_KEY": keys.reviewer,
        "CHORUS_ADMIN_KEY": ADMIN_KEY,
    }
    for written in readme_curl_commands(README.read_text(encoding="utf-8")):
        command = (
            written.replace("localhost:8000", f"127.0.0.1:{api.port}")
            .replace("127.0.0.1:8000", f"127.0.0.1:{api.port}")
            .replace("<CHORUS_ADMIN_KEY>", ADMIN_KEY)
            .replace("ticket-42", run_id)
        )
        if "<from the listing>" in command:
            approval = await pending_approval(http, keys.reviewer, run_id)
            command = command.replace("<from the listing>", approval["payload_hash"])
        status, body = await run_curl(command, env)
        assert status < 300, f"{written}\n-> {status} {body[:500]}"

    run = await run_completed(http, run_id)
    assert run["chain"] == "review_reply" and run["output"] == "Shipped today.", run


async def pending_approval(http: httpx.AsyncClient, key: str, run_id: str) -> dict[str, Any]:
    async def listed() -> dict[str, Any] | None:
        response = await http.get("/v1/approvals?status=pending", headers=bearer(key))
        items = response.json()["items"]
        return next((item for item in items if item["run_id"] == run_id), None)

    return await wait_for(listed)  # type: ignore[no-any-return]


async def test_json_without_a_json_content_type_is_read_as_json(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    name = f"greet_{uuid.uuid4().hex[:8]}"
    spec = {
        "name": name,
        "steps": [{"name": "hello", "kind": "model", "model": "cheap", "prompt": "Hi."}],
    }
    published = await http.put(
        f"/v1/chains/{name}", content=json.dumps(spec), headers={**admin(), **FORM}
    )
    assert published.status_code == 201, published.text

    body = json.dumps({"chain": name, "input": {}})
    for headers in ({}, FORM, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}):
        response = await http.post(
            "/v1/runs", content=body, headers={**bearer(keys.service), **headers}
        )
        assert response.status_code == 201, (headers, response.text)
        await run_completed(http, response.json()["run_id"])

    typo = await http.post(
        "/v1/runs", content=b'{"chain": "review_reply", "inputs": {}}', headers={**admin(), **FORM}
    )
    assert assert_error(typo, 422, "invalid_request")["details"][0]["path"] == "body.inputs"


async def test_a_body_that_is_not_json_is_a_415_naming_the_problem(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    form = await http.post(
        "/v1/runs", content=b"chain=review_reply&input=x", headers={**bearer(keys.service), **FORM}
    )
    error = assert_error(form, 415, "unsupported_media_type")
    assert "application/x-www-form-urlencoded" in error["message"]
    assert "not JSON" in error["message"] and "application/json" in error["message"]
    assert error["details"]["content_type"] == "application/x-www-form-urlencoded"

    untyped = await http.post("/v1/runs", content=b"{chain:", headers=bearer(keys.service))
    error = assert_error(untyped, 415, "unsupported_media_type")
    assert "no Content-Type" in error["message"] and error["details"]["json_error"]

    yaml_as_form = await http.put(
        "/v1/chains/review_reply", content=b"name: review_reply\n", headers={**admin(), **FORM}
    )
    assert "application/yaml" in assert_error(yaml_as_form, 415)["message"]

    # A body labelled JSON that is not JSON stays the route's 422, and other
    # types are the routes' business as before.
    labelled = await http.post(
        "/v1/runs", content=b"{chain:", headers={**admin(), "Content-Type": "application/json"}
    )
    assert_error(labelled, 422, "invalid_request")
    xml = await http.put(
        "/v1/chains/x", content=b"<chain/>", headers={**admin(), "Content-Type": "text/xml"}
    )
    assert_error(xml, 415, "unsupported_media_type")
