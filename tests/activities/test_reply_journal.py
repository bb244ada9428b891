"""A retried model call reuses the reply an earlier attempt already paid for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from activities.gateway.activities import ModelGateway
from activities.gateway.journal import ReplyJournal
from activities.gateway.registry import ModelRegistry
from simulator.control import SimulatorControl
from store.engine import make_engine, session_scope
from store.reply_journal import get_reply
from store.schema import create_all
from tests.activities.test_call_model import Env, ask


def journal_engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'chorus.db'}")
    create_all(engine)
    return engine


def at_attempt(env: Env, attempt: int) -> Env:
    env.attempt = attempt
    return env


async def test_a_retry_after_a_paid_answer_does_not_call_the_provider_again(
    gw_registry: ModelRegistry, http: httpx.AsyncClient, sim: SimulatorControl, tmp_path: Path
) -> None:
    engine = journal_engine(tmp_path)
    gateway = ModelGateway(gw_registry, http, journal=ReplyJournal(engine))
    env = Env()

    first = await at_attempt(env, 1).call(gateway, ask("cheap"))
    # The worker "died" before Temporal heard of it: attempt 2 of the same activity.
    again = await at_attempt(env, 2).call(gateway, ask("cheap"))

    assert again == first
    assert [c.outcome for c in await sim.calls(request_id_prefix=env.workflow_id)] == ["completed"]
    with session_scope(engine) as session:
        stored: Any = get_reply(session, request_id=env.request_id)
    assert stored["text"] == first.text and stored["cost_usd"] == first.cost_usd


async def test_a_first_attempt_never_reads_the_journal_and_other_requests_are_apart(
    gw_registry: ModelRegistry, http: httpx.AsyncClient, sim: SimulatorControl, tmp_path: Path
) -> None:
    gateway = ModelGateway(gw_registry, http, journal=ReplyJournal(journal_engine(tmp_path)))
    one, other = Env(), Env()

    await at_attempt(one, 1).call(gateway, ask("cheap"))
    await at_attempt(other, 2).call(gateway, ask("cheap"))  # a retry of another request

    assert len(await sim.calls(request_id_prefix=one.workflow_id)) == 1
    assert len(await sim.calls(request_id_prefix=other.workflow_id)) == 1
