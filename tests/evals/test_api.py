"""POST /v1/evals and GET /v1/evals/{id} over HTTP, on SQLite and PostgreSQL:
service and admin keys start and read evaluations of published chains (a
service key only its own), reviewers are refused, and bad input is a 4xx
naming what is wrong before anything starts."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import Client

from api.app import create_app
from core.settings import Settings
from simulator.control import SimulatorControl
from simulator.models import Fault
from tests.api.conftest import Keys, admin, assert_error, bearer, count_workflows, wait_for
from tests.evals.conftest import DATA, scripted_replies, tiny_set

pytestmark = pytest.mark.usefixtures("api_worker")


async def publish(http: httpx.AsyncClient, variant: str) -> str:
    """Publish a test variant under a name of its own; returns the name."""
    spec = yaml.safe_load((DATA / f"{variant}.yaml").read_text())
    spec["name"] = f"{variant}_{uuid.uuid4().hex[:8]}"
    response = await http.put(f"/v1/chains/{spec['name']}", json=spec, headers=admin())
    assert response.status_code == 201, response.text
    return str(spec["name"])


@pytest.fixture(scope="module")
async def variants(http: httpx.AsyncClient) -> tuple[str, str]:
    return await publish(http, "qa_quick"), await publish(http, "qa_careful")


def body(marker: str, variants: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    return {
        "eval_set": tiny_set(marker).model_dump(mode="json", exclude_none=True),
        "variants": list(variants),
        **extra,
    }


async def finished(http: httpx.AsyncClient, eval_id: str, headers: dict[str, str]) -> Any:
    async def done() -> dict[str, Any] | None:
        response = await http.get(f"/v1/evals/{eval_id}", headers=headers)
        assert response.status_code == 200, response.text
        detail = response.json()
        return detail if detail["status"] != "running" else None

    return await wait_for(done, timeout_s=60)


async def test_a_service_key_starts_an_evaluation_and_reads_its_report(
    http: httpx.AsyncClient, keys: Keys, variants: tuple[str, str], sim: SimulatorControl
) -> None:
    marker = f"A{uuid.uuid4().hex[:10]}"
    await sim.add_rules(*scripted_replies(marker))
    quick, careful = variants

    response = await http.post(
        "/v1/evals", json=body(marker, variants, concurrency=3), headers=bearer(keys.service)
    )

    assert response.status_code == 201, response.text
    accepted = response.json()
    assert (accepted["status"], accepted["cases_total"]) == ("running", 6)
    detail = await finished(http, accepted["eval_id"], bearer(keys.service))
    assert detail["status"] == "completed"
    assert detail["created_by"] == keys.names["service"]
    report = detail["report"]
    passed = {v["variant"]: (v["passed"], v["cases"]) for v in report["variants"]}
    assert passed == {quick: (2, 3), careful: (3, 3)}
    assert report["recommended"] == careful
    assert (report["cases_scored"], report["stopped_reason"]) == (6, None)
    assert report["simulated"] is True  # every alias of models.yaml is the simulator's
    # An admin reads it too; another service key does not see it at all.
    assert (await http.get(f"/v1/evals/{accepted['eval_id']}", headers=admin())).status_code == 200
    other = await http.post(
        "/v1/keys", json={"name": f"svc-{uuid.uuid4().hex[:6]}", "role": "service"}, headers=admin()
    )
    hidden = await http.get(f"/v1/evals/{accepted['eval_id']}", headers=bearer(other.json()["key"]))
    assert_error(hidden, 404)


async def test_reviewers_may_neither_start_nor_read_evaluations(
    http: httpx.AsyncClient, keys: Keys, variants: tuple[str, str]
) -> None:
    response = await http.post("/v1/evals", json=body("R", variants), headers=bearer(keys.reviewer))
    assert_error(response, 403)
    assert_error(await http.get("/v1/evals/eval-x", headers=bearer(keys.reviewer)), 403)
    assert_error(await http.get("/v1/evals/eval-x"), 401)


async def test_an_unknown_evaluation_is_404(http: httpx.AsyncClient) -> None:
    error = assert_error(await http.get("/v1/evals/eval-nope", headers=admin()), 404)
    assert "eval-nope" in error["message"]


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"variants": ["no_such_chain_x"]}, 404, "no_such_chain_x"),
        ({"variants": [""]}, 422, "variants"),
        ({"variants": ["a/b"]}, 422, "variants"),
        ({"concurrency": 0}, 422, "concurrency"),
        ({"max_cost_usd": -1}, 422, "max_cost_usd"),
        ({"judge": "no_such_alias"}, 422, "no_such_alias"),
        ({"eval_set": {"name": "empty", "cases": []}}, 422, "cases"),
        (
            {
                "eval_set": {
                    "name": "bad_regex",
                    "cases": [
                        {
                            "id": "c1",
                            "input": {"message": "hi"},
                            "checks": [{"kind": "contains", "pattern": "(unclosed"}],
                        }
                    ],
                }
            },
            422,
            "not a valid regex",
        ),
        (
            {
                "eval_set": {
                    "name": "not_a_contact",
                    "cases": [
                        {
                            "id": "c2",
                            "input": {"message": "hi"},
                            "checks": [{"kind": "no_pii", "allow": ["our front desk"]}],
                        }
                    ],
                }
            },
            422,
            "case 'c2', field checks[0].allow[0]",
        ),
        (
            {
                "eval_set": {
                    "name": "wrong_input",
                    "cases": [{"id": "c9", "input": {"text": "no message"}}],
                }
            },
            422,
            "case 'c9'",
        ),
    ],
    ids=[
        "unknown-variant",
        "empty-variant-name",
        "variant-not-a-chain-name",
        "bad-concurrency",
        "negative-budget",
        "unknown-judge",
        "empty-eval-set",
        "bad-regex",
        "allow-not-a-contact",
        "input-the-chain-refuses",
    ],
)
async def test_bad_input_is_refused_before_anything_starts(
    http: httpx.AsyncClient,
    temporal_env: Any,
    api_task_queue: str,
    variants: tuple[str, str],
    change: dict[str, Any],
    status: int,
    needle: str,
) -> None:
    client: Client = temporal_env.client
    before = await count_workflows(client, api_task_queue, "WorkflowType = 'ChorusEvalWorkflow'")
    request = {**body("B", variants), **change}

    response = await http.post("/v1/evals", json=request, headers=admin())

    error = assert_error(response, status)
    assert needle in str(error), error
    after = await count_workflows(client, api_task_queue, "WorkflowType = 'ChorusEvalWorkflow'")
    assert after == before


def test_the_schema_names_variants_as_chains_are_named() -> None:
    """Schema-valid data is accepted or a 404 (the fuzz test's rule): a variant
    the schema allows must be a name POST /v1/runs would look up as a chain."""
    schemas = create_app(Settings(_env_file=None)).openapi()["components"]["schemas"]
    chain = schemas["RunCreate"]["properties"]["chain"]
    variant = schemas["EvalCreate"]["properties"]["variants"]["items"]

    assert variant["pattern"] == chain["pattern"]
    assert variant["maxLength"] == chain["maxLength"]
    assert variant["minLength"] >= 1


async def test_get_shows_progress_while_the_evaluation_runs(
    http: httpx.AsyncClient, keys: Keys, variants: tuple[str, str], sim: SimulatorControl
) -> None:
    marker = f"P{uuid.uuid4().hex[:10]}"
    await sim.add_rules(*scripted_replies(marker))
    # One ticket's first call takes a few seconds: the evaluation is still
    # running while the others are scored.
    await sim.add_faults(Fault(kind="slow", match=f"{marker} when will", delay_s=4, times=1))
    response = await http.post(
        "/v1/evals", json=body(marker, variants[:1]), headers=bearer(keys.service)
    )
    assert response.status_code == 201, response.text
    eval_id = response.json()["eval_id"]

    async def some_progress() -> dict[str, Any] | None:
        detail = (await http.get(f"/v1/evals/{eval_id}", headers=bearer(keys.service))).json()
        progress = detail.get("progress")
        return detail if progress and progress["cases_done"] >= 2 else None

    detail = await wait_for(some_progress, timeout_s=30)
    assert (detail["status"], detail["report"]) == ("running", None)
    progress = detail["progress"]
    assert (progress["cases_total"], progress["status"]) == (3, "running")
    (only,) = progress["variants"]
    assert (only["variant"], only["in_flight"]) == (variants[0], 1)
    assert progress["spent_usd"] > 0
    done = await finished(http, eval_id, bearer(keys.service))
    assert (done["status"], done["progress"], done["report"]["cases_scored"]) == (
        "completed",
        None,
        3,
    )
