"""What workflow code counts reaches the worker's metrics: fallbacks taken
(after an error, for the budget), budget refusals, guard verdicts and how long
a reviewer's decision took, through
the SDK's workflow metric meter, with bounded labels only.

The worker here runs on a Temporal runtime exporting to Prometheus, as a
worker with CHORUS_METRICS_PORT does (`core.metrics.sdk_metrics_runtime`).
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.metrics import free_loopback_port, sdk_metrics_runtime
from runs.client import RunClient
from tests.workflows.stubs import DOWN, Harness, model
from tests.workflows.test_interpreter_actions import guarded
from tests.workflows.test_interpreter_approvals import parked
from worker.assembly import create_worker


@pytest.fixture
async def metered(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> AsyncIterator[tuple[Harness, int]]:
    port = free_loopback_port()
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        runtime=sdk_metrics_runtime(port),
    )
    harness = Harness(temporal_env, task_queue)
    harness.runs = RunClient(client, task_queue=task_queue)
    async with create_worker(client, task_queue=task_queue, activities=harness.stubs.activities):
        yield harness, port


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("chorus_")
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return sum(v for (n, have), v in samples.items() if n == name and set(labels.items()) <= have)


async def test_fallbacks_budget_refusals_and_guard_verdicts_are_counted(
    metered: tuple[Harness, int],
) -> None:
    chains, port = metered
    chains.stubs.script("writer", "Write to bob@example.com", "Use the support form")

    await chains.result([model("ask", DOWN, fallbacks=["cheap"])])
    await chains.result([model("ask", "pricey", budget_fallback="cheap")], max_cost_usd=0.01)
    retried = await chains.result(guarded("retry"))
    chains.stubs.script("writer", "Mail bob@example.com")
    await chains.failure(guarded("fail"))

    started = await parked(chains)
    await chains.decide(started, await chains.pending(started), "reject", comment="no")
    assert (await chains.finish(started)).status == "rejected"

    samples = scrape(port)
    assert value(samples, "chorus_approval_decision_seconds_count", decision="reject") == 1
    assert value(samples, "chorus_approval_decision_seconds_count", decision="approve") == 0
    waited = value(samples, "chorus_approval_decision_seconds_sum", decision="reject")
    assert 0 <= waited < 30
    assert value(samples, "chorus_model_fallbacks_total", alias="cheap", reason="error") == 1
    assert value(samples, "chorus_model_fallbacks_total", alias="cheap", reason="budget") == 1
    assert value(samples, "chorus_budget_refusals_total", alias="pricey") == 1
    verdicts = {
        verdict: value(samples, "chorus_guard_verdicts_total", verdict=verdict)
        for verdict in ("passed", "passed_after_retry", "escalated", "failed")
    }
    assert retried.status == "completed"
    assert verdicts == {"passed": 0, "passed_after_retry": 1, "escalated": 0, "failed": 1}
    labels = {key for (_, have) in samples for key, _ in have}
    assert labels <= {
        "alias",
        "reason",
        "chain",
        "verdict",
        "decision",
        "le",
        "namespace",
        "task_queue",
        "workflow_type",
        "service_name",
    }
