"""Fixtures for gateway tests: a registry pointing at the session simulator,
a real httpx client that records what it sent, and a gateway on both."""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from activities.gateway.activities import ModelGateway
from activities.gateway.registry import ModelRegistry
from simulator.server import SimulatorServer

OPENAI_KEY_ENV = "CHORUS_TEST_OPENAI_KEY"
ANTHROPIC_KEY_ENV = "CHORUS_TEST_ANTHROPIC_KEY"


def gateway_models(base_url: str) -> dict[str, Any]:
    """Aliases over the simulator in every shape the gateway speaks."""
    return {
        "models": {
            "cheap": {
                "provider": "simulator",
                "model": "sim-mini",
                "prices": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
            },
            "strong": {
                "provider": "simulator",
                "model": "sim-large",
                "prices": {
                    "input_per_mtok": 3.0,
                    "output_per_mtok": 15.0,
                    "cached_input_per_mtok": 0.30,
                    "reasoning_per_mtok": 20.0,
                },
                "heartbeat_timeout_s": 0.3,
            },
            # The simulator speaking OpenAI, called as a keyed OpenAI-compatible server.
            "gpt": {
                "provider": "openai",
                "model": "sim-mini",
                "base_url": base_url,
                "api_key_env": OPENAI_KEY_ENV,
                "max_tokens_param": "max_completion_tokens",
                "prices": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            },
            "claude": {
                "provider": "anthropic",
                "model": "sim-large",
                "base_url": base_url,
                "api_key_env": ANTHROPIC_KEY_ENV,
                "prices": {
                    "input_per_mtok": 3.0,
                    "output_per_mtok": 15.0,
                    "cached_input_per_mtok": 0.30,
                    "cache_write_per_mtok": 3.75,
                },
            },
            "claude_small": {
                "provider": "anthropic",
                "model": "sim-mini",
                "base_url": base_url,
                "api_key_env": ANTHROPIC_KEY_ENV,
                "prices": {"input_per_mtok": 1.0, "output_per_mtok": 5.0},
            },
            "impatient": {
                "provider": "simulator",
                "model": "sim-mini",
                "prices": {"input_per_mtok": 1.0, "output_per_mtok": 1.0},
                "timeout_s": 0.3,
            },
            "missing_model": {
                "provider": "simulator",
                "model": "sim-does-not-exist",
                "prices": {"input_per_mtok": 1.0, "output_per_mtok": 1.0},
            },
        }
    }


@pytest.fixture(scope="session")
def gw_registry(simulator: SimulatorServer) -> ModelRegistry:
    return ModelRegistry.from_dict(
        gateway_models(simulator.openai_base_url), simulator.openai_base_url
    )


@dataclass
class SentRequests:
    """What the gateway put on the wire, observed on a real client."""

    requests: list[httpx.Request] = field(default_factory=list)

    async def record(self, request: httpx.Request) -> None:
        self.requests.append(request)

    @property
    def last(self) -> httpx.Request:
        assert self.requests, "no request was sent"
        return self.requests[-1]

    def last_json(self) -> dict[str, Any]:
        return json.loads(self.last.content)


@pytest.fixture
async def sent() -> SentRequests:
    return SentRequests()


@pytest.fixture(scope="session")
def tls_context() -> ssl.SSLContext:
    """Built once: httpx loads certificates for every client otherwise (~0.2 s each)."""
    return ssl.create_default_context()


@pytest.fixture
async def http(sent: SentRequests, tls_context: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        verify=tls_context, event_hooks={"request": [sent.record]}
    ) as client:
        yield client


@pytest.fixture
async def gateway(gw_registry: ModelRegistry, http: httpx.AsyncClient) -> ModelGateway:
    return ModelGateway(gw_registry, http)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        OPENAI_KEY_ENV: "sk-test-openai-0123456789",
        ANTHROPIC_KEY_ENV: "sk-ant-test-987654321",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def request_id() -> str:
    """A unique X-Chorus-Request-Id, so faults and call-log reads stay in this test."""
    return f"gw-{uuid.uuid4()}/1"
