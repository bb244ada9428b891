"""A worker's Prometheus endpoint, end to end: `python -m worker` with
CHORUS_METRICS_PORT runs a chain on two aliases against the simulator, and
one scrape shows the Temporal SDK's metrics beside Chorus' calls, tokens and
cost for each alias, in the text and the OpenMetrics formats, with no label
holding the run's id."""

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
from tests.integration.conftest import load_spec
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


async def test_worker_endpoint_shows_sdk_and_chorus_metrics(
    temporal_env: Any, simulator: Any, registry: Any, task_queue: str, tmp_path: Path
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
        "CHORUS_DATABASE_URL": f"sqlite:///{tmp_path / 'chorus.db'}",
        "CHORUS_METRICS_PORT": str(port),
    }
    spec = load_spec(
        {
            "name": "metrics_probe",
            "steps": [
                {"name": "draft", "kind": "model", "model": "cheap", "prompt": "{{ input.q }}"},
                {"name": "polish", "kind": "model", "model": "strong",
                 "prompt": "Polish: {{ steps.draft.output[:40] }}"},
            ],
        },
        registry,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    run_id = f"metrics-{uuid.uuid4()}"
    worker = await WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        await scrape(url)  # up before the run
        started = await RunClient(temporal_env.client, task_queue=task_queue).start(
            spec, {"q": "Why is the sky blue?"}, run_id=run_id
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
    for alias in ("cheap", "strong"):
        labels = {"alias": alias, "provider": "simulator"}
        assert total(found, "chorus_model_calls_total", **labels, outcome="ok") == 1
        assert total(found, "chorus_model_tokens_total", **labels, kind="input") > 0
        assert total(found, "chorus_model_tokens_total", **labels, kind="output") > 0
        assert total(found, "chorus_model_cost_usd_total", **labels) == pytest.approx(
            result.usage.per_model[alias].cost_usd
        )
        assert total(found, "chorus_model_call_duration_seconds_count", **labels) == 1
    assert total(found, "chorus_runs_finished_total", chain="metrics_probe", status="completed")
    # No series names the run.
    assert run_id not in text and run_id not in openmetrics
    # Prometheus asks for OpenMetrics first: the SDK's families must parse there too.
    om_names = {f.name for f in parse_om(openmetrics)}
    assert "chorus_model_calls" in om_names and "temporal_workflow_completed" in om_names
