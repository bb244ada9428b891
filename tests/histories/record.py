"""Record workflow histories of the shipped chains for the replay tests.

    .venv/bin/python -m tests.histories.record --tag TAG    (or: make histories TAG=...)

Run it when a change to workflows/ is *meant* to alter the commands a run
issues, after guarding the change with `workflow.patched`; commit the new
files next to the old ones (old histories must keep replaying: they stand for
runs in flight when a new worker version is deployed). Files are named
`CHAIN__SCENARIO[__TAG].json`; the tag says which workflow version recorded them.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.gateway.registry import ModelRegistry
from cli.devstack.temporal_server import (
    dynamic_config_args,
    find_temporal_binary,
    search_attribute_args,
)
from core.chain_spec import ChainSpec
from core.names import DECIDE, PENDING_APPROVALS_QUERY
from core.settings import DEFAULT_DEV_DYNAMIC_CONFIG
from runs.client import RunClient
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule, ToolCallSpec
from simulator.server import SimulatorServer
from store.engine import make_engine
from store.sample_knowledge import ingest_sample_knowledge
from store.schema import create_all
from tests.conftest import activity_host
from worker.assembly import hosted_worker
from workflows.types import ApprovalDecision, ApprovalState
from workflows.validate import load_chain_yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FAST = {"max_attempts": 3, "initial_interval_s": 0.1, "backoff": 1.0}

Setup = Callable[[SimulatorControl], Awaitable[None]]


async def _nothing(_: SimulatorControl) -> None:
    return None


def _rules(*rules: Rule) -> Setup:
    async def setup(sim: SimulatorControl) -> None:
        await sim.add_rules(*rules)

    return setup


def _faults(*faults: Fault) -> Setup:
    async def setup(sim: SimulatorControl) -> None:
        await sim.add_faults(*faults)

    return setup


def _shipped(name: str, aliases: set[str]) -> ChainSpec:
    return load_chain_yaml((ROOT / "chains" / f"{name}.yaml").read_text(), aliases)


@dataclass(frozen=True)
class Decide:
    """A reviewer decision sent as the `decide` Update once the approval is pending."""

    decision: str
    reviewer: str = "alice"
    roles: tuple[str, ...] = ("reviewer",)
    comment: str | None = None
    edited_text: str | None = None


def _scenarios(aliases: set[str]) -> list[tuple[str, ChainSpec, Any, Setup, list[Decide]]]:
    review = _shipped("review_reply", aliases)
    classify = _shipped("classify_then_answer", aliases)
    judge = _shipped("ask_two_judge", aliases)
    cascade = _shipped("cascade_answer", aliases)
    plain: list[tuple[str, ChainSpec, Any, Setup]] = [
        ("classify_then_answer__simple", classify, {"question": "Opening hours?"}, _nothing),
        (
            "classify_then_answer__complex",
            classify,
            {"question": "Plan my loan"},
            _rules(
                Rule(model="sim-mini", json={"complexity": "complex", "topic": "loans"}, times=1)
            ),
        ),
        (
            "classify_then_answer__reask",
            classify,
            {"question": "Plan my loan"},
            _rules(
                Rule(
                    model="sim-mini",
                    replies=["not json", '{"complexity": "complex", "topic": "x"}'],
                    times=2,
                ),
            ),
        ),
        ("ask_two_judge__default", judge, {"question": "Tea or coffee?"}, _nothing),
        (
            "ask_two_judge__branch_fails",
            judge,
            {"question": "Tea or coffee?"},
            _faults(Fault(kind="status", status=400, model="sim-large", times=5)),
        ),
        (
            "cascade_answer__confident",
            cascade,
            {"question": "Opening hours?"},
            _rules(Rule(model="sim-mini", json={"answer": "9 to 5", "confidence": 0.95})),
        ),
        (
            "cascade_answer__escalated",
            cascade,
            {"question": "Is my contract void?"},
            _rules(Rule(model="sim-mini", json={"answer": "maybe", "confidence": 0.3})),
        ),
        (
            "cascade_answer__budget_exceeded",
            cascade,
            {"question": "Is my contract void?"},
            _rules(
                Rule(
                    model="sim-mini",
                    json={"answer": "maybe", "confidence": 0.3},
                    usage={"completion_tokens": 400, "prompt_tokens": 90000},
                )
            ),
        ),
    ]
    message = {"message": "Where is my refund?", "customer": "Ada"}
    triage = _shipped("support_triage", aliases)
    single_strong = _shipped("support_single_strong", aliases)
    cascade_grounded = _shipped("support_cascade", aliases)
    team = _shipped("agent_team", aliases)

    def classified(category: str, complexity: str, model: str = "sim-mini") -> Rule:
        return Rule(
            model=model,
            match="Classify this ticket",
            json={
                "category": category,
                "complexity": complexity,
                "urgency": "normal",
                "confidence": 0.9,
            },
            times=1,
        )

    def verdict(category: str, complexity: str, model: str = "sim-mini") -> Setup:
        return _rules(classified(category, complexity, model))

    def grounded(model: str, cites: str | None, confidence: float) -> Rule:
        """A grounded draft (JSON) citing `cites`, a passage the sample
        Help Center ranks in the question's top k."""
        answer = f"Here is what the Help Center says [{cites}]." if cites else "Not sure."
        return Rule(
            model=model,
            match="Answer the question from these passages",
            json={"answer": answer, "confidence": confidence},
        )

    return [
        (
            "agent_team__revised",
            team,
            {"message": "Where are my boots? NW-1002"},
            _rules(
                Rule(model="sim-large", after_tool="lookup_order", reply="NW-1002 shipped by UPS."),
                Rule(
                    model="sim-large",
                    match="Find the facts",
                    tool_calls=[
                        ToolCallSpec(name="lookup_order", arguments={"order_id": "NW-1002"})
                    ],
                ),
                Rule(
                    model="sim-writer", match="Rewrite this reply", reply="Your boots ship by UPS."
                ),
                Rule(model="sim-writer", reply="Your boots are coming."),
                Rule(model="sim-judge", reply="REVISE: name the carrier"),
            ),
            [],
        ),
        (
            "agent_team__accepted",
            team,
            {"message": "Where are my boots? NW-1002"},
            _rules(Rule(model="sim-judge", reply="ACCEPT")),
            [],
        ),
        (
            "support_triage__simple",
            triage,
            {"message": "Do you ship to Canada?"},
            verdict("shipping", "simple"),
            [],
        ),
        (
            "support_triage__complex",
            triage,
            {"message": "My tent pole snapped on the second trip, is that covered?"},
            verdict("product", "complex"),
            [],
        ),
        (
            "support_triage__refund_approved",
            triage,
            {"message": "I returned the boots two weeks ago, where is my refund?"},
            verdict("refund", "complex"),
            [Decide("approve")],
        ),
        (
            # The Help Center does not cover it: nothing relevant, a "let me
            # check" draft and a reviewer (the retrieve-min-score patch).
            "support_triage__nothing_relevant",
            triage,
            {"message": "Can you recommend a good recipe for campfire chili?"},
            verdict("other", "complex"),
            [Decide("approve")],
        ),
        (
            # The variants `chorus compare` runs against the flagship.
            "support_single_strong__complex",
            single_strong,
            {"message": "My tent pole snapped on the second trip, is that covered?"},
            verdict("product", "complex", model="sim-large"),
            [],
        ),
        (
            "support_cascade__confident",
            cascade_grounded,
            {"message": "My tent pole snapped on the second trip, is that covered?"},
            _rules(classified("product", "complex"), grounded("sim-mini", "warranty.md#1", 0.9)),
            [],
        ),
        (
            "support_cascade__escalated",
            cascade_grounded,
            {"message": "My tent pole snapped on the second trip, is that covered?"},
            _rules(
                classified("product", "complex"),
                grounded("sim-large", "warranty.md#1", 0.9),
                grounded("sim-mini", None, 0.3),
            ),
            [],
        ),
        (
            "support_cascade__refund_approved",
            cascade_grounded,
            {"message": "I returned the boots two weeks ago, where is my refund?"},
            _rules(classified("refund", "complex"), grounded("sim-mini", "refunds.md#1", 0.9)),
            [Decide("approve")],
        ),
        *((name, spec, value, setup, []) for name, spec, value, setup in plain),
        ("review_reply__approved", review, message, _nothing, [Decide("approve")]),
        (
            "review_reply__edited",
            review,
            message,
            _nothing,
            [Decide("edit", edited_text="Your refund left today.")],
        ),
        (
            "review_reply__rejected",
            review,
            message,
            _nothing,
            [Decide("reject", comment="promise we cannot keep")],
        ),
    ]


async def _send_decisions(handle: Any, decisions: list[Decide]) -> None:
    for decide in decisions:
        for _ in range(400):
            pending = await handle.query(PENDING_APPROVALS_QUERY, result_type=list[ApprovalState])
            if pending:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"{handle.id}: no approval became pending")
        await handle.execute_update(
            DECIDE,
            ApprovalDecision(
                approval_id=pending[0].approval_id,
                decision=decide.decision,  # type: ignore[arg-type]
                reviewer=decide.reviewer,
                reviewer_roles=list(decide.roles),
                payload_hash=pending[0].payload_hash,
                comment=decide.comment,
                edited_text=decide.edited_text,
            ),
        )


async def _record(
    client: Client, task_queue: str, sim: SimulatorControl, name: str, spec: ChainSpec,
    value: Any, setup: Setup, decisions: list[Decide], tag: str,
) -> None:  # fmt: skip
    await sim.reset()
    await setup(sim)
    handle = (
        await RunClient(client, task_queue=task_queue).start(
            spec, value, run_id=f"history-{name}-{uuid.uuid4()}"
        )
    ).handle
    await _send_decisions(handle, decisions)
    try:
        result = await handle.result()
        outcome = result.status
    except WorkflowFailureError as err:
        outcome = f"failed ({err.cause})"
    history = await handle.fetch_history()
    (HERE / f"{name}__{tag}.json").write_text(history.to_json())
    print(f"{name}: {outcome}, {len(history.events)} events")
    # Agents run as child workflows with histories of their own (the last run
    # of each, after any continue-as-new).
    for step in _agent_steps(spec):
        child = client.get_workflow_handle(f"{handle.id}--{step}")
        try:
            child_history = await child.fetch_history()
        except RPCError:
            continue  # that agent's branch was not taken
        (HERE / f"{name}__{tag}__agent_{step}.json").write_text(child_history.to_json())


def _agent_steps(spec: ChainSpec) -> list[str]:
    from core.chain_spec import AgentStep, iter_model_steps

    return [s.name for s in iter_model_steps(spec.steps) if isinstance(s, AgentStep)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="names the workflow version, e.g. a patch id")
    parser.add_argument("--only", help="record only the scenarios whose name starts with this")
    args = parser.parse_args()
    tag, only = args.tag, args.only
    with SimulatorServer() as simulator:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=find_temporal_binary(),
            data_converter=pydantic_data_converter,
            dev_server_extra_args=[
                *search_attribute_args(),
                *dynamic_config_args(DEFAULT_DEV_DYNAMIC_CONFIG),
            ],
        )
        registry = ModelRegistry.from_file(
            ROOT / "chains" / "models.yaml", simulator_base_url=simulator.openai_base_url
        )
        # The run index, audit log and knowledge live in a throwaway SQLite file.
        store_dir = Path(tempfile.mkdtemp(prefix="chorus-"))
        engine = make_engine(f"sqlite:///{store_dir / 'chorus.db'}")
        create_all(engine)
        ingest_sample_knowledge(engine)
        task_queue = f"histories-{uuid.uuid4()}"
        try:
            async with (
                hosted_worker(env.client, activity_host(registry, engine), task_queue=task_queue),
                SimulatorControl(simulator.url) as sim,
            ):
                for name, spec, value, setup, decisions in _scenarios(set(registry.aliases)):
                    if only and not name.startswith(only):
                        continue
                    await _record(
                        env.client, task_queue, sim, name, spec, value, setup, decisions, tag
                    )
        finally:
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
