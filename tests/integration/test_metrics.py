"""A worker's Prometheus endpoint, end to end: `python -m worker` with
CHORUS_METRICS_PORT runs the flagship chain (a complex ticket: the cheap
classifier, the strong model grounded in the Help Center, the writer)
against the simulator, and one scrape shows the Temporal SDK's metrics beside
Chorus' calls, tokens and cost for each alias, in the text and the
OpenMetrics formats, with no label holding the run's id."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from runs.client import RunClient
from simulator.control import SimulatorControl
from tests.integration.conftest import shipped_chain
from tests.integration.test_support_triage import classified
from tests.integration.test_tools_retrieval_guards import knowledge  # noqa: F401 (fixture)
from tests.integration.worker_process import WorkerProcess

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in found.get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


async def scrape(url: str, *, openmetrics: bool = False, timeout_s: float = 20) -> str:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            try:
                response = await client.get(url, headers=headers)
                response.raise_for_status()
                return response.text
            except httpx.HTTPError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)


@pytest.mark.usefixtures("knowledge")
async def test_worker_endpoint_shows_sdk_and_chorus_metrics_after_a_flagship_run(
    temporal_env: Any,
    simulator: Any,
    sim: SimulatorControl,
    store_engine: Any,
    registry: Any,
    task_queue: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CHORUS_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "CHORUS_TASK_QUEUE": task_queue,
        "CHORUS_SIMULATOR_HOST": "127.0.0.1",
        "CHORUS_SIMULATOR_PORT": str(simulator.port),
        "CHORUS_LOG_FORMAT": "json",
        "CHORUS_LOG_LEVEL": "warning",
        # The session's database, with the sample Help Center and brand guide.
        "CHORUS_DATABASE_URL": store_engine.url.render_as_string(hide_password=False),
        "CHORUS_METRICS_PORT": str(port),
    }
    ticket = "My tent pole snapped on the second trip, is that covered and what do I send you?"
    await sim.add_rules(classified(ticket, "product", "complex"))
    spec = shipped_chain("support_triage", registry)
    url = f"http://127.0.0.1:{port}/metrics"
    run_id = f"metrics-{uuid.uuid4()}"
    worker = await WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        await scrape(url)  # up before the run
        started = await RunClient(temporal_env.client, task_queue=task_queue).start(
            spec, {"message": ticket}, run_id=run_id
        )
        result = await asyncio.wait_for(started.handle.result(), 60)
        assert result.status == "completed"
        text = await scrape(url)
        openmetrics = await scrape(url, openmetrics=True)
    finally:
        await worker.stop()

    found = samples(text)
    # The Temporal SDK's own metrics (counters with the conventional suffix).
    assert any(name.startswith("temporal_") for name in found), sorted(found)
    assert total(found, "temporal_workflow_completed_total", task_queue=task_queue) >= 1
    assert total(found, "temporal_activity_execution_latency_count", task_queue=task_queue) >= 2
    # Chorus' own, per alias.
    assert set(result.usage.per_model) == {"cheap", "strong", "writer"}
    for alias, usage in result.usage.per_model.items():
        labels = {"alias": alias, "provider": "simulator"}
        assert total(found, "chorus_model_calls_total", **labels, outcome="ok") == usage.calls
        assert total(found, "chorus_model_tokens_total", **labels, kind="input") > 0
        assert total(found, "chorus_model_tokens_total", **labels, kind="output") > 0
        assert total(found, "chorus_model_cost_usd_total", **labels) == pytest.approx(
            result.usage.per_model[alias].cost_usd
        )
        assert total(found, "chorus_model_call_duration_seconds_count", **labels) == usage.calls
    assert total(found, "chorus_runs_finished_total", chain="support_triage", status="completed")
    assert total(found, "chorus_retrievals_total", outcome="ok") >= 1
    # No series names the run.
    assert run_id not in text and run_id not in openmetrics
    # Prometheus asks for OpenMetrics first: the SDK's families must parse there too.
    om_names = {f.name for f in parse_om(openmetrics)}
    assert "chorus_model_calls" in om_names and "temporal_workflow_completed" in om_names
