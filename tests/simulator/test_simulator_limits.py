"""The simulator's provider-side rate limits: 429 with Retry-After over the
limit, and the rate-limit headers of each dialect on every answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from simulator.control import SimulatorControl
from simulator.models import ProviderLimit
from simulator.rate_limits import openai_duration
from simulator.server import SimulatorServer


@pytest.fixture
async def http(simulator: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator.url, timeout=10) as client:
        yield client


def chat(
    text: str = "hello there", max_tokens: int = 10, model: str = "sim-mini"
) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
    }


async def test_requests_over_the_limit_get_429_with_retry_after(
    sim: SimulatorControl, http: httpx.AsyncClient
) -> None:
    await sim.set_limits(ProviderLimit(model="sim-mini", rpm=2, window_s=1.0))
    first = await http.post("/v1/chat/completions", json=chat())
    second = await http.post("/v1/chat/completions", json=chat())
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    over = await http.post("/v1/chat/completions", json=chat())
    assert over.status_code == 429
    assert over.headers["retry-after"] == "1"
    assert over.headers["x-ratelimit-remaining-requests"] == "0"
    assert over.json()["error"]["code"] == "rate_limit_exceeded"
    # Another model is not limited.
    assert (await http.post("/v1/chat/completions", json=chat(model="sim-mini-b"))).is_success
    await asyncio.sleep(1.05)
    assert (await http.post("/v1/chat/completions", json=chat())).status_code == 200
    statuses = [c.status for c in await sim.calls(model="sim-mini")]
    assert statuses == [200, 200, 429, 200]


async def test_tokens_count_max_tokens_in_flight_and_real_usage_after(
    sim: SimulatorControl, http: httpx.AsyncClient
) -> None:
    # "hello there": ceil(11 / 4) + 3 + 3 = 9 prompt tokens; 9 + 40 = 49 in flight.
    await sim.set_limits(ProviderLimit(model="sim-mini", tpm=80, window_s=30))
    first = await http.post("/v1/chat/completions", json=chat(max_tokens=40))
    assert first.status_code == 200
    # Reported as the request is admitted: its prompt and max_tokens count.
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 80 - (9 + 40)
    usage = first.json()["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] < 40
    # Settled at its real usage, the first call leaves room for a second.
    assert (await http.post("/v1/chat/completions", json=chat(max_tokens=40))).status_code == 200
    over = await http.post("/v1/chat/completions", json=chat(max_tokens=40))
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 30
    # A request larger than the whole limit is refused too.
    huge = await http.post("/v1/chat/completions", json=chat(max_tokens=500))
    assert huge.status_code == 429


async def test_anthropic_dialect_headers(sim: SimulatorControl, http: httpx.AsyncClient) -> None:
    await sim.set_limits(ProviderLimit(model="sim-large", rpm=5, tpm=10_000, window_s=60))
    response = await http.post(
        "/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={
            "model": "sim-large",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status_code == 200
    assert response.headers["anthropic-ratelimit-requests-limit"] == "5"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "4"
    reset = datetime.fromisoformat(response.headers["anthropic-ratelimit-requests-reset"])
    assert 50 < (reset - datetime.now(UTC)).total_seconds() <= 60
    assert int(response.headers["anthropic-ratelimit-tokens-remaining"]) < 10_000


async def test_reset_forgets_limits(sim: SimulatorControl, http: httpx.AsyncClient) -> None:
    await sim.set_limits(ProviderLimit(model="sim-mini", rpm=1, window_s=60))
    assert (await http.post("/v1/chat/completions", json=chat())).status_code == 200
    assert (await http.post("/v1/chat/completions", json=chat())).status_code == 429
    await sim.reset()
    response = await http.post("/v1/chat/completions", json=chat())
    assert response.status_code == 200
    assert "x-ratelimit-limit-requests" not in response.headers


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (1.0, "1s"), (1.5, "1.5s"), (360.0, "6m0s")]
)
def test_openai_duration_format(seconds: float, text: str) -> None:
    assert openai_duration(seconds) == text
