"""The flagship chain end to end through the HTTP API: knowledge ingested over
HTTP, tickets started over HTTP, and a refund that waits for a reviewer who
approves it over HTTP."""

from __future__ import annotations

import httpx
import pytest

from simulator.control import SimulatorControl
from store.sample_knowledge import SAMPLE_COLLECTIONS
from tests.api.conftest import Keys, bearer
from tests.api.test_approvals_e2e import closed_run, decide, pending_for, start
from tests.integration.test_support_triage import classified

pytestmark = pytest.mark.usefixtures("api_worker")


async def ingest_over_http(http: httpx.AsyncClient, keys: Keys) -> None:
    for collection, paths in SAMPLE_COLLECTIONS.items():
        for path in paths:
            response = await http.post(
                f"/v1/knowledge/{collection}/documents",
                json={"name": path.name, "text": path.read_text(), "source": str(path.name)},
                headers=bearer(keys.reviewer),
            )
            assert response.status_code in (200, 201), response.text


async def test_support_tickets_through_the_api_with_one_approved_over_http(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await ingest_over_http(http, keys)
    simple = "Do you ship to Canada?"
    refund = "I returned the boots two weeks ago, where is my refund?"
    await sim.add_rules(
        classified(simple, "shipping", "simple"), classified(refund, "refund", "complex")
    )

    simple_id = await start(http, keys, "support_triage", {"message": simple})
    refund_id = await start(http, keys, "support_triage", {"message": refund})

    item = await pending_for(http, keys.reviewer, refund_id, "review")
    assert item["chain"] == "support_triage" and item["context"]["category"] == "refund"
    answer = await decide(
        http, keys.reviewer, refund_id, "review",
        decision="approve", payload_hash=item["payload_hash"], comment="policy checked",
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "approved"

    done = await closed_run(http, refund_id)
    assert done["status"] == "completed" and done["output"] == item["text"]
    assert "[" in item["text"] and "#" in item["text"]  # the grounded answer's citation survived
    plain = await closed_run(http, simple_id)
    assert plain["status"] == "completed" and plain["pending_approvals"] == []
