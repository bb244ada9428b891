"""The API's Prometheus endpoint (CHORUS_METRICS_PORT): requests counted by
route template and status (never by raw path, so no run id and no scanner's
path becomes a series), and the runs awaiting approval by chain."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.server import ApiServer
from tests.api.conftest import Keys, admin, bearer, wait_for
from tests.api.test_approvals_e2e import closed_run, decide, pending_for, start

pytestmark = pytest.mark.usefixtures("api_worker")


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"  # the endpoint does not depend on the backend


@pytest.fixture(scope="module")
def api_overrides() -> dict[str, Any]:
    return {"metrics_port": 0}


async def scrape(api: ApiServer) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    server = api.app.state.metrics_server
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
    assert response.status_code == 200
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return response.text, found


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in found.get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


async def test_requests_by_route_and_runs_awaiting_approval(
    api: ApiServer, http: httpx.AsyncClient, keys: Keys
) -> None:
    run_id = await start(http, keys, "review_reply", {"message": "Where is my parcel?"})
    item = await pending_for(http, keys.reviewer, run_id)

    async def awaiting() -> dict[str, Any] | None:
        _, found = await scrape(api)
        count = total(found, "chorus_runs_awaiting_approval", chain="review_reply")
        return found if count >= 1 else None

    found = await wait_for(awaiting)
    route = "/v1/runs/{run_id}/approvals/{approval_id}"
    requests = "chorus_api_requests_total"
    # The registry is the process's: other tests' API servers in this process
    # count too, so the decision is counted as a difference.
    decisions_before = total(found, requests, method="POST", route=route, status="200")
    decided = await decide(
        http, keys.reviewer, run_id, item["approval_id"],
        decision="approve", payload_hash=item["payload_hash"],
    )  # fmt: skip
    assert decided.status_code == 200, decided.text
    await closed_run(http, run_id)
    stray = f"/no-such-page-{uuid.uuid4().hex}"
    assert (await http.get(stray, headers=admin())).status_code == 404
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.service))).status_code == 200

    text, found = await scrape(api)
    assert total(found, requests, method="POST", route="/v1/runs", status="201") >= 1
    assert total(found, requests, method="GET", route="/v1/runs/{run_id}", status="200") >= 2
    assert total(found, requests, method="GET", route="/v1/approvals", status="200") >= 1
    assert total(found, requests, method="POST", route=route, status="200") == decisions_before + 1
    assert total(found, requests, method="GET", route="/healthz", status="200") >= 1
    assert total(found, requests, route="unmatched", status="404") >= 1
    assert total(found, "chorus_api_request_duration_seconds_count", route="/v1/runs") >= 1
    # Decided: no longer waiting.
    assert total(found, "chorus_runs_awaiting_approval", chain="review_reply") == 0
    # Route templates only: neither the run's id nor the stray path is a label.
    assert run_id not in text and stray not in text
