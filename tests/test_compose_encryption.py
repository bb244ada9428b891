"""Encrypted payloads and traces in the compose stack: the `codec-server`
service (profile `encryption`) and the Temporal UI's codec endpoint, turned
on by the commented lines of deploy/chorus.env.example, and OTLP traces by
one variable. `docker-compose config` resolves the file as tests/test_compose.py
does (no Docker engine here); the resolved environment is then given to the
real Settings, codec server app and tracing switch, so a variable name the
code does not read, a CORS origin the UI does not have or a token path the
server does not serve fails here."""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from api.codec_server import CodecServer, codec_app_from_settings
from core.encryption import new_key
from core.settings import Settings
from core.tracing import tracing_enabled
from tests.test_compose import (
    ENV_EXAMPLE,
    REQUIRED_VARS,
    _python_check,
    _run_python_check,
    run_compose,
)

UI_ORIGIN = "http://127.0.0.1:8080"
EXAMPLE_KEY = new_key()
EXAMPLE_TOKEN = secrets.token_hex(32)
ENCRYPTION_LINE = re.compile(
    r"^# ((?:COMPOSE_PROFILES|CHORUS_ENCRYPTION_\w+|CHORUS_CODEC_\w+)=.*)$"
)


def example_encryption_lines() -> list[str]:
    """The env example's encryption block, uncommented, its "change-me"
    values replaced as its comments say (a key, a token)."""
    lines = [
        m.group(1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if (m := ENCRYPTION_LINE.match(line))
    ]
    out = []
    for line in lines:
        name, _, value = line.partition("=")
        if name == "CHORUS_ENCRYPTION_KEYS":
            value = re.sub(r"change-me[\w-]*", EXAMPLE_KEY, value)
        elif name == "CHORUS_CODEC_AUTH_TOKEN":
            value = re.sub(r"change-me[\w-]*", EXAMPLE_TOKEN, value)
        assert "change-me" not in value, f"no rule to fill in {line!r}"
        out.append(f"{name}={value}")
    return out


def config(tmp_path: Path, *args: str, env_file_text: str = "", **env: str) -> dict[str, Any]:
    result = run_compose(
        *args, "config", env={**REQUIRED_VARS, **env}, tmp_path=tmp_path,
        env_file_text=env_file_text,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def default_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack with none of the encryption or trace variables set."""
    return config(tmp_path_factory.mktemp("compose-default"))


@pytest.fixture(scope="module")
def encrypted_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack with the env example's encryption block turned on in .env
    (its `${CHORUS_CODEC_AUTH_TOKEN}` interpolated by docker-compose)."""
    return config(
        tmp_path_factory.mktemp("compose-encryption"),
        "--profile", "encryption",
        env_file_text="\n".join(example_encryption_lines()) + "\n",
    )  # fmt: skip


@pytest.fixture
def container_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make this process's environment a container's resolved environment
    (`KEY:` entries left unset stay unset), for Settings and tracing."""

    def apply(environment: Mapping[str, Any]) -> Settings:
        for name in list(os.environ):
            if name.startswith(("CHORUS_", "OTEL_", "DATABASE_URL")):
                monkeypatch.delenv(name)
        for name, value in environment.items():
            if value is not None:
                monkeypatch.setenv(name, str(value))
        return Settings(_env_file=None)  # type: ignore[call-arg]

    yield apply


def published(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
        else:
            *host, target = port.removesuffix("/tcp").split(":")
            ip, host_port = host if len(host) == 2 else ("", host[0])
            out.append((ip, int(host_port), int(target)))
    return out


# ------------------------------------------------------------ default stack


def test_the_default_stack_starts_without_the_codec_server(
    default_stack: dict[str, Any], container_env: Any
) -> None:
    services = default_stack["services"]
    assert services["codec-server"]["profiles"] == ["encryption"]
    for name, spec in services.items():
        if "encryption" not in spec.get("profiles", []):
            assert "codec-server" not in (spec.get("depends_on") or {}), name
    # No codec for the UI, and nothing passed to the processes: encryption off.
    assert services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"] == ""
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        for var in ("CHORUS_ENCRYPTION_KEYS", "CHORUS_ENCRYPTION_ACTIVE_KEY"):
            assert var in env and env[var] is None, f"{name}.{var}"
        assert "CHORUS_CODEC_AUTH_TOKEN" not in env, f"{name}: only the codec server needs it"
        settings = container_env(env)
        assert not settings.encryption_enabled
        assert not tracing_enabled(settings)


# ---------------------------------------------------------- encryption on


def test_the_env_example_block_is_commented_and_complete() -> None:
    text = ENV_EXAMPLE.read_text()
    names = {line.partition("=")[0] for line in example_encryption_lines()}
    assert names == {
        "COMPOSE_PROFILES",
        "CHORUS_ENCRYPTION_KEYS",
        "CHORUS_ENCRYPTION_ACTIVE_KEY",
        "CHORUS_CODEC_AUTH_TOKEN",
        "CHORUS_CODEC_UI_ENDPOINT",
    }
    assert "COMPOSE_PROFILES=encryption" in example_encryption_lines()
    assert "openssl rand -base64 32" in text
    assert "# OTEL_EXPORTER_OTLP_ENDPOINT=" in text


def test_codec_server_gets_the_keys_and_token_from_env(encrypted_stack: dict[str, Any]) -> None:
    services = encrypted_stack["services"]
    codec = services["codec-server"]
    assert codec["command"] == ["codec-server", "--host", "0.0.0.0", "--port", "8081"]
    env = codec["environment"]
    assert env["CHORUS_ENCRYPTION_KEYS"] == f"k1:{EXAMPLE_KEY}"
    assert env["CHORUS_ENCRYPTION_ACTIVE_KEY"] == "k1"
    assert env["CHORUS_CODEC_AUTH_TOKEN"] == EXAMPLE_TOKEN
    assert env["CHORUS_ENVIRONMENT"] == "production"
    # Large payloads by reference are read from the application database.
    assert env["DATABASE_URL"] == services["api"]["environment"]["DATABASE_URL"]
    assert codec["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("api", "worker"):
        other = services[name]["environment"]
        assert other["CHORUS_ENCRYPTION_KEYS"] == env["CHORUS_ENCRYPTION_KEYS"], name
        assert other["CHORUS_ENCRYPTION_ACTIVE_KEY"] == "k1", name
        assert "CHORUS_CODEC_AUTH_TOKEN" not in other, f"{name}: least privilege"


def test_codec_server_is_published_on_this_host_only(encrypted_stack: dict[str, Any]) -> None:
    codec = encrypted_stack["services"]["codec-server"]
    ports = published(codec)
    assert ports == [("127.0.0.1", 8081, 8081)]


def test_the_ui_gets_the_codec_endpoint_on_the_published_port(
    encrypted_stack: dict[str, Any],
) -> None:
    services = encrypted_stack["services"]
    endpoint = services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"]
    assert endpoint == f"http://127.0.0.1:8081/t/{EXAMPLE_TOKEN}"
    [(ip, host_port, _)] = published(services["codec-server"])
    url = urlsplit(endpoint)
    assert (url.hostname, url.port) == (ip, host_port), "the browser calls it from this host"
    [(_, ui_port, _)] = published(services["temporal-ui"])
    assert f"http://127.0.0.1:{ui_port}" == UI_ORIGIN


async def test_the_codec_server_serves_the_ui_from_its_origin(
    encrypted_stack: dict[str, Any], container_env: Any
) -> None:
    """The resolved codec-server environment, loaded by the real Settings,
    makes a codec server that answers the browser's preflight from the UI's
    origin and the UI's endpoint (token in the path) with the stack's key."""
    services = encrypted_stack["services"]
    settings = container_env(services["codec-server"]["environment"])
    assert settings.encryption_enabled
    assert UI_ORIGIN in settings.codec_cors_origin_list
    path = urlsplit(services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"]).path
    transport = httpx.ASGITransport(app=codec_app_from_settings(settings))
    headers = {"Origin": UI_ORIGIN, "X-Namespace": "default"}
    plain = {
        "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
        "data": base64.b64encode(b'"ticket text"').decode(),
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        preflight = await client.options(
            f"{path}/decode",
            headers={
                "Origin": UI_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN

        encoded = await client.post(f"{path}/encode", json={"payloads": [plain]}, headers=headers)
        assert encoded.status_code == 200, encoded.text
        [sealed] = encoded.json()["payloads"]
        assert base64.b64decode(sealed["metadata"]["encryption-key-id"]) == b"k1"
        decoded = await client.post(f"{path}/decode", json=encoded.json(), headers=headers)
        assert decoded.json() == {"payloads": [plain]}
        assert decoded.headers["access-control-allow-origin"] == UI_ORIGIN

        no_token = await client.post("/decode", json=encoded.json(), headers=headers)
        assert no_token.status_code == 401


async def test_codec_server_healthcheck_probes_a_real_codec_server(
    encrypted_stack: dict[str, Any], container_env: Any
) -> None:
    codec = encrypted_stack["services"]["codec-server"]
    code = _python_check(codec)
    assert "http://127.0.0.1:8081/healthz" in code
    settings = container_env(codec["environment"])
    async with CodecServer(settings) as server:
        assert await _run_python_check(code.replace("http://127.0.0.1:8081", server.url), {}) == 0
        missing = code.replace("/healthz", "/no-such-path")
        assert (
            await _run_python_check(missing.replace("http://127.0.0.1:8081", server.url), {}) != 0
        )


# ------------------------------------------------------------------ traces


def test_one_variable_turns_traces_on(tmp_path: Path, container_env: Any) -> None:
    endpoint = "http://otel-collector.example:4318"
    services = config(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint, name
        assert tracing_enabled(container_env(env)), name
