"""`call_model` with a limited alias and the database limiter, against the
simulator: a call over the alias's limits is answered at once with a typed
wait (nothing sent), the provider's rate-limit headers and 429s hold back the
calls after them without a request, and calls are settled at real usage."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from activities.gateway.activities import ModelGateway
from activities.gateway.pacing import CallPacing
from activities.gateway.rate_limits import DatabaseLimiter
from activities.gateway.registry import ModelRegistry
from activities.gateway.types import (
    ChatMessage,
    ModelCallInput,
    RateLimitWaitDetails,
)
from activities.gateway.types import ProviderErrorType as T
from core.names import CALL_MODEL
from core.settings import Settings
from simulator.control import SimulatorControl
from simulator.models import Fault, ProviderLimit
from simulator.server import SimulatorServer
from store.engine import make_engine
from store.rate_limits import RateLimitLease
from store.schema import create_all
from tests.activity_env import ActivityEnv

PRICES = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'limits.db'}")
    create_all(engine)
    return engine


@pytest.fixture
async def limited(
    simulator: SimulatorServer, engine: Engine
) -> AsyncIterator[tuple[ModelGateway, str]]:
    """A gateway whose alias `limited` (sim-mini) allows 2 requests per 30 s."""
    alias = "limited"
    registry = ModelRegistry.from_dict(
        {
            "models": {
                alias: {
                    "provider": "simulator",
                    "model": "sim-mini",
                    "prices": PRICES,
                    "rpm": 2,
                    "rate_window_s": 30,
                    "max_retry_after_s": 10,
                }
            }
        },
        simulator.openai_base_url,
    )
    async with httpx.AsyncClient() as http:
        yield ModelGateway(registry, http, pacing=CallPacing(DatabaseLimiter(engine))), alias


def ask(alias: str, *, defer: bool = True, ticket: str | None = None) -> ModelCallInput:
    return ModelCallInput(
        alias=alias,
        messages=[ChatMessage(role="user", content="hello")],
        max_tokens=20,
        step="answer",
        defer_rate_limits=defer,
        rate_limit_ticket=ticket,
    )


def env(attempt: int = 1) -> ActivityEnv:
    return ActivityEnv(activity_type=CALL_MODEL, activity_id=uuid.uuid4().hex, attempt=attempt)


async def test_a_call_over_the_limit_is_a_wait_the_workflow_takes(
    limited: tuple[ModelGateway, str], sim: SimulatorControl, engine: Engine
) -> None:
    gateway, alias = limited
    for _ in range(2):
        await env().execute(gateway.call_model, ask(alias))
    err = await env().raised(gateway.call_model, ask(alias))
    assert err.type == T.RATE_LIMIT_WAIT and err.non_retryable
    wait = RateLimitWaitDetails.model_validate(err.details[0])
    assert wait.alias == alias and wait.ticket
    assert 30 < wait.retry_in_s <= 30 + 3  # the window plus its margin
    assert "limit of 2 requests per 30 s" in wait.reason
    assert "rate limited until" in err.message
    assert len(await sim.calls(model="sim-mini")) == 2  # the third was never sent

    # Without `defer_rate_limits` (a run recorded before), or on a retry: a
    # retryable RateLimited whose delay is the wait.
    old = await env().raised(gateway.call_model, ask(alias, defer=False))
    assert old.type == T.RATE_LIMITED and not old.non_retryable
    assert old.next_retry_delay is not None and old.next_retry_delay.total_seconds() > 30
    retry = await env(attempt=2).raised(gateway.call_model, ask(alias))
    assert retry.type == T.RATE_LIMITED

    # The calls that went are settled at their real usage, not in flight.
    with Session(engine) as session:
        leases = session.exec(select(RateLimitLease).where(RateLimitLease.alias == alias)).all()
    sent = [lease for lease in leases if lease.ticket is None]
    assert len(sent) == 2
    assert all(lease.active_until is None for lease in sent)
    usage = [c.usage for c in await sim.calls(model="sim-mini")]
    assert sorted(lease.tokens for lease in sent) == sorted(
        u["prompt_tokens"] + u["completion_tokens"] for u in usage if u
    )


async def test_the_providers_headers_hold_back_the_next_call(
    limited: tuple[ModelGateway, str], sim: SimulatorControl
) -> None:
    """The provider allows one request per 8 s (its headers say so as it
    answers): the next call waits without being sent, and no 429 is met."""
    gateway, alias = limited
    await sim.set_limits(ProviderLimit(model="sim-mini", rpm=1, window_s=8))
    await env().execute(gateway.call_model, ask(alias))
    err = await env().raised(gateway.call_model, ask(alias))
    assert err.type == T.RATE_LIMIT_WAIT
    wait = RateLimitWaitDetails.model_validate(err.details[0])
    assert "provider reported no requests left" in wait.reason
    assert 6 < wait.retry_in_s <= 8
    assert [c.status for c in await sim.calls(model="sim-mini")] == [200]


async def test_a_provider_wait_past_max_retry_after_s_makes_the_alias_unavailable(
    limited: tuple[ModelGateway, str], sim: SimulatorControl
) -> None:
    """Headers saying nothing is left for 20 s, more than the alias waits
    (max_retry_after_s 10): the next call is ProviderUnavailable at once, so
    the step asks its fallback."""
    gateway, alias = limited
    await sim.set_limits(ProviderLimit(model="sim-mini", rpm=1, window_s=20))
    await env().execute(gateway.call_model, ask(alias))
    err = await env().raised(gateway.call_model, ask(alias))
    assert err.type == T.UNAVAILABLE and err.non_retryable
    assert "unavailable until" in err.message and "max_retry_after_s 10" in err.message
    assert len(await sim.calls(model="sim-mini")) == 1


async def test_a_429_holds_back_every_caller(
    limited: tuple[ModelGateway, str], sim: SimulatorControl
) -> None:
    gateway, alias = limited
    await sim.add_faults(Fault(kind="status", status=429, retry_after="5", model="sim-mini"))
    first = await env().raised(gateway.call_model, ask(alias))
    assert first.type == T.RATE_LIMITED and first.next_retry_delay is not None
    assert first.next_retry_delay.total_seconds() >= 5
    # Another run's call is not sent into the same 429: it waits the block.
    other = await env().raised(gateway.call_model, ask(alias))
    assert other.type == T.RATE_LIMIT_WAIT
    wait = RateLimitWaitDetails.model_validate(other.details[0])
    assert "the provider asked to wait (Retry-After)" in wait.reason
    assert 4 < wait.retry_in_s <= 5
    assert len(await sim.calls(model="sim-mini")) == 1


def test_the_redis_limiter_needs_its_url() -> None:
    with pytest.raises(ValueError, match="CHORUS_REDIS_URL"):
        Settings(rate_limiter="redis", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="redis://"):
        Settings(redis_url="http://127.0.0.1:6379", _env_file=None)  # type: ignore[call-arg]
    settings = Settings(
        rate_limiter="redis",
        redis_url="redis://:s3cret-pass@127.0.0.1:6379/0",
        _env_file=None,  # type: ignore[call-arg]
    )
    assert "s3cret-pass" not in repr(settings)
