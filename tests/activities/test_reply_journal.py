"""The reply journal under `call_model`, on SQLite and PostgreSQL: a retried
call reuses the raw reply an earlier attempt already paid for, never another
run's, and counts an attempt that may have been billed unseen as unconfirmed."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from activities.gateway.activities import ModelGateway
from activities.gateway.journal import ReplyJournal
from activities.gateway.registry import ModelRegistry
from activities.gateway.types import ModelCallInput, prompt_tokens_bound
from activities.gateway.types import ProviderErrorType as T
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule
from store.engine import session_scope
from store.reply_journal import (
    EarlierAttempt,
    earlier_attempts,
    record_attempt,
    record_raw_reply,
)
from tests.activities.conftest import gateway_models
from tests.activities.test_call_model import Env, ask
from tests.pg import BACKENDS, empty_database, engine_with_tables


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with (
        empty_database(
            request, request.param, sqlite_file=tmp_path / "chorus.db", schema_prefix="journal_"
        ) as url,
        engine_with_tables(url) as engine,
    ):
        yield engine


@pytest.fixture
def journaled(gw_registry: ModelRegistry, http: httpx.AsyncClient, engine: Engine) -> ModelGateway:
    return ModelGateway(gw_registry, http, journal=ReplyJournal(engine))


def at(env: Env, attempt: int, **changes: str) -> Env:
    """The same activity (same workflow id and activity id) at `attempt`,
    optionally in another run (`workflow_run_id=`)."""
    return dataclasses.replace(env, attempt=attempt, **changes)


def attempts(engine: Engine, env: Env) -> list[EarlierAttempt]:
    with session_scope(engine) as session:
        return earlier_attempts(session, request_id=env.request_id, before=1000)


def worst_case(registry: ModelRegistry, req: ModelCallInput) -> float:
    prices = registry.entry(req.alias).prices
    return prices.worst_case(prompt_tokens_bound(req), req.max_tokens)


def died_in_flight(engine: Engine, env: Env, registry: ModelRegistry, req: ModelCallInput) -> None:
    """What a worker SIGKILLed after its request left leaves in the journal:
    the attempt recorded in flight, and no reply."""
    with session_scope(engine) as session:
        record_attempt(
            session,
            request_id=env.request_id,
            attempt=env.attempt,
            workflow_id=env.workflow_id,
            run_id=env.workflow_run_id,
            activity_id=env.activity_id,
            alias=req.alias,
            worst_case_usd=worst_case(registry, req),
        )


async def test_a_retry_after_a_paid_answer_reuses_its_raw_reply(
    journaled: ModelGateway, sim: SimulatorControl, engine: Engine
) -> None:
    env = Env()
    first = await at(env, 1).call(journaled, ask("cheap"))
    # The worker "died" before Temporal heard of it: attempt 2 of the same activity.
    again = await at(env, 2).call(journaled, ask("cheap"))

    assert again == first
    assert again.unconfirmed_attempts == 0 and again.unconfirmed_usd == 0
    assert [c.outcome for c in await sim.calls(request_id_prefix=env.workflow_id)] == ["completed"]
    [journal] = attempts(engine, env)
    # The provider's body as it came, journaled before anything parsed it.
    assert journal.state == "replied" and journal.raw_reply is not None
    assert journal.raw_reply["choices"][0]["message"]["content"] == first.text
    assert journal.raw_reply["usage"]["prompt_tokens"] == first.usage.input_tokens


async def test_a_first_attempt_never_reads_the_journal_and_other_requests_are_apart(
    journaled: ModelGateway, sim: SimulatorControl
) -> None:
    one, other = Env(), Env()
    await at(one, 1).call(journaled, ask("cheap"))
    await at(other, 2).call(journaled, ask("cheap"))  # a retry of another request

    assert len(await sim.calls(request_id_prefix=one.workflow_id)) == 1
    assert len(await sim.calls(request_id_prefix=other.workflow_id)) == 1


async def test_a_retry_in_another_run_of_the_same_workflow_id_never_gets_its_reply(
    journaled: ModelGateway, sim: SimulatorControl, engine: Engine
) -> None:
    """Activity ids restart in a run that continued as new and in a run
    reusing a closed run's workflow id: same workflow id, same activity id."""
    env = Env(workflow_run_id="run-a")
    await sim.add_rules(
        Rule(request_id_prefix=env.workflow_id, match="first run", reply="The first run's reply."),
        Rule(request_id_prefix=env.workflow_id, match="next run", reply="The next run's reply."),
    )
    earlier = await at(env, 1).call(journaled, ask("cheap", "first run"))
    retried = await at(env, 2, workflow_run_id="run-b").call(journaled, ask("cheap", "next run"))

    assert earlier.text == "The first run's reply."
    assert retried.text == "The next run's reply."
    assert retried.unconfirmed_attempts == 0  # run-a's attempt is not run-b's either
    calls = await sim.calls(request_id_prefix=env.workflow_id)
    assert [c.request_id for c in calls] == [
        f"{env.workflow_id}/run-a/7",
        f"{env.workflow_id}/run-b/7",
    ]


async def test_an_attempt_in_flight_with_no_reply_is_counted_unconfirmed(
    journaled: ModelGateway, gw_registry: ModelRegistry, sim: SimulatorControl, engine: Engine
) -> None:
    env, req = Env(), ask("strong")
    died_in_flight(engine, at(env, 1), gw_registry, req)

    result = await at(env, 2).call(journaled, req)

    expected = worst_case(gw_registry, req)
    assert expected > result.cost_usd > 0
    assert result.unconfirmed_attempts == 1
    assert result.unconfirmed_usd == pytest.approx(expected)
    assert len(await sim.calls(request_id_prefix=env.workflow_id)) == 1  # asked again
    assert [(a.attempt, a.state) for a in attempts(engine, env)] == [
        (1, "in_flight"),
        (2, "replied"),
    ]
    # A third attempt (this one died after journaling its reply) reuses
    # attempt 2's reply and still counts attempt 1.
    third = await at(env, 3).call(journaled, req)
    assert (third.text, third.unconfirmed_attempts) == (result.text, 1)
    assert len(await sim.calls(request_id_prefix=env.workflow_id)) == 1


async def test_a_timed_out_attempt_is_unconfirmed_in_its_error_and_in_the_retry(
    gw_registry: ModelRegistry,
    http: httpx.AsyncClient,
    engine: Engine,
    sim: SimulatorControl,
) -> None:
    """The gateway gave up waiting (`impatient`: 0.3 s): the request had left,
    so the provider may still answer and bill it."""
    gateway = ModelGateway(gw_registry, http, journal=ReplyJournal(engine))
    env, req = Env(), ask("impatient")
    await sim.add_faults(Fault(kind="slow", delay_s=2, request_id_prefix=env.workflow_id, times=1))
    expected = worst_case(gw_registry, req)

    error = await at(env, 1).fail(gateway, req)
    assert error.type == T.TIMEOUT and not error.non_retryable
    assert error.details[0]["unconfirmed_attempts"] == 1
    assert error.details[0]["unconfirmed_usd"] == pytest.approx(expected)
    assert error.details[0]["alias"] == "impatient"  # the original details are kept

    result = await at(env, 2).call(gateway, req)
    assert (result.unconfirmed_attempts, result.unconfirmed_usd) == (1, pytest.approx(expected))


async def test_errors_the_provider_answered_are_not_counted(
    journaled: ModelGateway, sim: SimulatorControl, engine: Engine
) -> None:
    env = Env()
    await sim.add_faults(
        Fault(kind="status", status=500, request_id_prefix=env.workflow_id, times=1)
    )
    error = await at(env, 1).fail(journaled, ask("cheap"))
    assert error.type == T.SERVER_ERROR and "unconfirmed_usd" not in error.details[0]

    result = await at(env, 2).call(journaled, ask("cheap"))
    assert result.unconfirmed_attempts == 0
    assert [(a.attempt, a.state) for a in attempts(engine, env)] == [(1, "failed"), (2, "replied")]


async def test_a_request_that_never_left_is_not_counted(
    http: httpx.AsyncClient, engine: Engine
) -> None:
    """Connection refused: not a byte was sent, so nothing can be billed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    models = gateway_models(f"http://127.0.0.1:{closed_port}/v1")
    models["models"]["cheap"]["base_url"] = f"http://127.0.0.1:{closed_port}/v1"
    registry = ModelRegistry.from_dict(models, f"http://127.0.0.1:{closed_port}/v1")
    gateway = ModelGateway(registry, http, journal=ReplyJournal(engine))
    env = Env()

    error = await at(env, 1).fail(gateway, ask("cheap"))

    assert error.type == T.CONNECTION and "unconfirmed_usd" not in error.details[0]
    assert [(a.attempt, a.state) for a in attempts(engine, env)] == [(1, "failed")]


async def test_a_final_error_counts_the_earlier_attempts_in_its_details(
    journaled: ModelGateway, gw_registry: ModelRegistry, sim: SimulatorControl, engine: Engine
) -> None:
    env, req = Env(), ask("cheap")
    died_in_flight(engine, at(env, 1), gw_registry, req)
    await sim.add_faults(Fault(kind="status", status=400, request_id_prefix=env.workflow_id))

    error = await at(env, 2).fail(journaled, req)

    assert error.type == T.BAD_REQUEST and error.non_retryable
    assert error.details[0]["unconfirmed_attempts"] == 1
    assert error.details[0]["unconfirmed_usd"] == pytest.approx(worst_case(gw_registry, req))


async def test_a_journaled_reply_that_does_not_parse_counts_and_the_call_is_made(
    journaled: ModelGateway, gw_registry: ModelRegistry, sim: SimulatorControl, engine: Engine
) -> None:
    """A 2xx body the adapter cannot read was probably billed, at a cost
    nobody can read from it: counted at worst case, and asked again."""
    env, req = Env(), ask("cheap")
    died_in_flight(engine, at(env, 1), gw_registry, req)
    with session_scope(engine) as session:
        record_raw_reply(
            session, request_id=env.request_id, attempt=1, reply={"choices": []}, latency_ms=5.0
        )

    result = await at(env, 2).call(journaled, req)

    assert result.text and result.unconfirmed_attempts == 1
    assert len(await sim.calls(request_id_prefix=env.workflow_id)) == 1
