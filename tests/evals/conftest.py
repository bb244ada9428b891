"""Fixtures of the evaluation engine's tests: the tiny eval set and two
variants under tests/evals/data/, a worker over every Chorus activity, and
simulator replies scripted per test (a unique marker in every ticket)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from activities.gateway.registry import ModelRegistry
from core.chain_spec import ChainSpec
from core.evals.spec import EvalSet, load_eval_set
from runs.catalog import Catalog
from runs.evals import EvalClient
from simulator.control import SimulatorControl
from simulator.models import Rule
from store.evals import EvalCaseScore, case_scores
from tests.api.conftest import (  # noqa: F401 - the API tests' fixtures, for test_api.py
    api,
    api_overrides,
    api_task_queue,
    api_worker,
    backend,
    database_url,
    db_engine,
    http,
    keys,
)
from tests.conftest import activity_host
from worker.assembly import hosted_worker
from workflows.validate import check_chain, parse_chain_yaml

DATA = Path(__file__).resolve().parent / "data"
CHEAP_MODEL = "sim-mini"
STRONG_MODEL = "sim-large"


def tiny_set(marker: str, path: Path = DATA / "tiny_set.yaml") -> EvalSet:
    """The tiny eval set with this test's marker in every ticket."""
    loaded = load_eval_set(path)
    data = loaded.model_dump(mode="json", exclude_none=True)
    for case in data["cases"]:
        case["input"]["message"] = case["input"]["message"].replace("MARK", marker)
    return EvalSet.model_validate(data)


def variant(name: str, registry: ModelRegistry) -> ChainSpec:
    spec = parse_chain_yaml((DATA / f"{name}.yaml").read_text())
    check_chain(spec, registry.aliases)
    return spec


def scripted_replies(marker: str) -> list[Rule]:
    """The strong model answers every ticket well; the cheap one misses the
    return window (so `qa_quick` passes 2 of 3, `qa_careful` 3 of 3). Only
    the variants' models: a judge's prompt quotes the ticket too."""
    return [
        Rule(
            match=f"{marker} how long", model=STRONG_MODEL, reply="You can return within 30 days."
        ),
        Rule(match=f"{marker} how long", model=CHEAP_MODEL, reply="Returns are possible."),
        *(
            Rule(match=f"{marker} I want a refund", model=model, reply="Your refund is on its way.")
            for model in (CHEAP_MODEL, STRONG_MODEL)
        ),
        *(
            Rule(match=f"{marker} when will", model=model, reply="Shipping takes 5 business days.")
            for model in (CHEAP_MODEL, STRONG_MODEL)
        ),
    ]


@dataclass
class EvalBench:
    client: EvalClient
    registry: ModelRegistry
    engine: Engine
    marker: str

    def scores(self, eval_id: str) -> list[EvalCaseScore]:
        return case_scores(self.engine, eval_id)

    def variants(self, *names: str) -> list[ChainSpec]:
        return [variant(name, self.registry) for name in names]


@pytest.fixture
def marker() -> str:
    return f"T{uuid.uuid4().hex[:10]}"


@pytest.fixture
def eval_catalog(registry: ModelRegistry) -> Catalog:
    return Catalog(aliases=frozenset(registry.aliases), tools=frozenset())


@pytest.fixture
async def bench(
    temporal_env: Any,
    registry: ModelRegistry,
    store_engine: Engine,
    task_queue: str,
    sim: SimulatorControl,
    marker: str,
    eval_catalog: Catalog,
) -> AsyncIterator[EvalBench]:
    await sim.add_rules(*scripted_replies(marker))
    host = activity_host(registry, store_engine)
    async with hosted_worker(temporal_env.client, host, task_queue=task_queue):
        yield EvalBench(
            client=EvalClient(temporal_env.client, task_queue=task_queue, catalog=eval_catalog),
            registry=registry,
            engine=store_engine,
            marker=marker,
        )
