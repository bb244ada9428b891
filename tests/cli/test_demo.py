"""`chorus demo`: the flagship chain on the sample tickets, as a real process
that starts (or reuses) the dev stack; and the strong-only re-pricing."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from activities.gateway.types import ModelPrices, TokenUsage
from cli.demo.analysis import comparison_prices, describe_path, strong_only_cost
from cli.demo.driver import DEMO_REVIEWER
from cli.demo.tickets import SAMPLE_TICKETS
from cli.devstack.probes import port_open
from cli.devstack.stack import DevStack
from simulator.control import SimulatorControl
from simulator.models import Fault
from tests.cli.test_devstack import ROOT, gone, stack_env, stack_settings
from workflows.types import (
    ApprovalState,
    ChainResult,
    ModelCallRecord,
    ReviewerDecision,
    StepRecord,
    UsageSummary,
)

STRONG = ModelPrices(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3)


async def run_demo_process(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "demo", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# ------------------------------------------------------------- real process


@pytest.mark.slow
async def test_demo_json_runs_every_ticket_and_stops_what_it_started(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    code, out, err = await run_demo_process(["--json"], stack_env(settings))

    assert code == 0, err
    summary = json.loads(out)  # the whole of stdout is one JSON object
    tickets = summary["tickets"]
    assert [t["id"] for t in tickets] == [t.id for t in SAMPLE_TICKETS]
    assert all(t["status"] == "completed" and t["error"] is None for t in tickets), tickets
    assert summary["paths"]["simple"] >= 1 and summary["paths"]["complex"] >= 1
    assert sum(summary["paths"].values()) == len(tickets)
    assert "scripted" in summary["note"] and "SIMULATOR" in summary["note"]

    for ticket in tickets:
        assert ticket["path"][0] == "classify[cheap]"
        assert ticket["cost_usd"] == pytest.approx(sum(ticket["cost_by_model"].values()))
        assert ticket["reply"]
        if (
            ticket["path_kind"] == "complex"
            and "research(help_center: nothing relevant)" in (ticket["path"])
        ):
            # The Help Center does not cover it: an honest draft, a person, no citation.
            assert "let_me_check[cheap]" in ticket["path"], ticket
            assert any(p.startswith("approval: ") for p in ticket["path"]), ticket
            assert "strong" not in ticket["cost_by_model"]
        elif ticket["path_kind"] == "complex":
            assert any(p.startswith("research(help_center: ") for p in ticket["path"])
            assert any(p.startswith("grounded_answer[strong] cites ") for p in ticket["path"])
            assert any(p.startswith("check_citations ✓") for p in ticket["path"]), ticket
            assert "strong" in ticket["cost_by_model"]
        else:
            assert "quick_answer[cheap]" in ticket["path"]
            assert "strong" not in ticket["cost_by_model"]
        assert any(p.startswith("check_reply ✓") for p in ticket["path"])

    by_id = {t["id"]: t for t in tickets}
    refund = by_id["boots-refund"]
    assert refund["approval"] == {"decision": "edit", "reviewer": DEMO_REVIEWER}
    assert refund["reply"] == next(t.edited_reply for t in SAMPLE_TICKETS if t.id == refund["id"])
    assert refund["path"][-1] == f"approval: edited by {DEMO_REVIEWER}"
    assert by_id["not-what-i-expected"]["approval"] == {
        "decision": "approve",
        "reviewer": DEMO_REVIEWER,
    }
    assert by_id["shipping-canada"]["approval"] is None
    assert by_id["shipping-canada"]["path"][-1] == "approval: not required"
    decided = summary["approvals"]["decided"]
    assert summary["approvals"]["count"] == len(decided) == 2
    assert {(d["run_id"], d["approval_id"]) for d in decided} == {
        (refund["run_id"], "review"),
        (by_id["not-what-i-expected"]["run_id"], "review"),
    }

    routed, strong = summary["routed_cost_usd"], summary["strong_only_cost_usd"]
    assert 0 < routed < strong
    assert routed == pytest.approx(sum(t["cost_usd"] for t in tickets))
    assert summary["savings_ratio"] == pytest.approx(1 - routed / strong, abs=1e-4)

    # Everything it started is gone again, and its ports are closed.
    started = summary["stack"]["started"]
    assert set(started) == {"temporal", "simulator", "worker"}
    assert summary["stack"]["reused"] == []
    assert all(gone(pid) for pid in started.values()), started
    for port in (settings.temporal_port, settings.temporal_ui_port, settings.simulator_port):
        assert not await port_open("127.0.0.1", port), port
    assert list((tmp_path / "state" / "run").glob("*.pid")) == []


@pytest.mark.slow
async def test_demo_reuses_a_running_stack_leaves_it_running_and_reports_a_failed_ticket(
    tmp_path: Path,
) -> None:
    settings = stack_settings(tmp_path / "state")
    stack = DevStack(settings, api=False, startup_timeout=60)
    await stack.start()
    try:
        # One ticket's classifier call meets a non-retryable provider error.
        async with SimulatorControl(stack.simulator_url) as sim:
            await sim.add_faults(
                Fault(
                    kind="status",
                    status=401,
                    model="sim-mini",
                    match="Classify this ticket(?s:.*)reset my account password",
                )
            )

        code, out, err = await run_demo_process([], stack_env(settings))

        assert code == 1, (out, err)
        assert "ticket password-reset (run demo-password-reset-" in err
        assert "ended failed" in err and "401" in err
        assert "classifier's verdict for each ticket is scripted" in out
        assert "temporal already running, simulator already running, worker already" in out
        assert f"approval: edited by {DEMO_REVIEWER}" in out
        assert f"approval: approved by {DEMO_REVIEWER}" in out
        assert "check_citations ✓" in out
        assert "POST /v1/runs/demo-boots-refund-" in out
        assert "Routing saved" in out and "same tokens, strong prices" in out
        # What the demo did not start, it did not stop.
        assert stack.is_running
        assert await stack.check() == {"temporal": True, "simulator": True, "worker": True}
        assert all(psutil.pid_exists(pid) for pid in stack.pids.values())
    finally:
        await stack.stop()


@pytest.mark.slow
async def test_ctrl_c_while_tickets_run_stops_everything_the_demo_started(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "demo", "--json",
        cwd=ROOT, env=stack_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        # A shell's background job inherits an ignored SIGINT: restore Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        seen = b""
        async with asyncio.timeout(60):
            while b"started run demo-" not in seen:
                line = await proc.stderr.readline()
                assert line, f"the demo ended before any run started: {seen.decode()}"
                seen += line
        pids = {int(f.read_text()) for f in (tmp_path / "state" / "run").glob("*.pid")}
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 130, (seen + err).decode()
    assert out == b""
    assert b"interrupted: stopped what the demo started" in err
    assert len(pids) == 3 and all(gone(pid) for pid in pids), pids
    for port in (settings.temporal_port, settings.temporal_ui_port, settings.simulator_port):
        assert not await port_open("127.0.0.1", port), port


# ------------------------------------------------------------- re-pricing


def call(alias: str, usage: TokenUsage, cost: float, outcome: str = "ok") -> ModelCallRecord:
    return ModelCallRecord(alias=alias, outcome=outcome, usage=usage, cost_usd=cost)  # type: ignore[arg-type]


def result_with(steps: dict[str, StepRecord], **fields: Any) -> ChainResult:
    return ChainResult(
        chain="support_triage",
        version=1,
        status="completed",
        steps=steps,
        usage=UsageSummary(),
        **fields,
    )


def test_strong_only_cost_reprices_every_calls_tokens_at_the_given_prices() -> None:
    classify = StepRecord(
        name="classify",
        kind="model",
        status="completed",
        model="cheap",
        calls=[call("cheap", TokenUsage(input_tokens=1000, output_tokens=200), 0.00027)],
    )
    route = StepRecord(name="answer", kind="route", status="completed", branch="otherwise")
    answer = StepRecord(
        name="grounded_answer",
        kind="model",
        status="completed",
        model="cheap",
        calls=[
            # A failed call on the strong model still used (and paid for) no tokens...
            call("strong", TokenUsage(), 0.0, outcome="failed"),
            # ...and the fallback's cached prompt tokens keep their cached price.
            call(
                "cheap",
                TokenUsage(input_tokens=500, cached_input_tokens=400, output_tokens=100),
                0.0001,
            ),
        ],
    )
    result = result_with({"classify": classify, "answer": route, "grounded_answer": answer})

    # 1000*3 + 200*15 = 6000; 100*3 + 400*0.3 + 100*15 = 1920 (micro-dollars)
    assert strong_only_cost(result, STRONG) == pytest.approx(0.00792)
    assert strong_only_cost(result_with({"answer": route}), STRONG) == 0.0


def test_comparison_prices_are_the_strong_alias_prices_of_the_registry(tmp_path: Path) -> None:
    prices = comparison_prices(stack_settings(tmp_path))
    assert (prices.input_per_mtok, prices.output_per_mtok) == (3.0, 15.0)


def test_path_names_models_citations_checks_and_the_reviewer() -> None:
    passages = {"passages": [{"id": "refunds.md#2"}, {"id": "returns.md#0"}]}
    steps = {
        "classify": StepRecord(name="classify", kind="model", status="completed", model="cheap"),
        "answer": StepRecord(name="answer", kind="route", status="completed", branch="otherwise"),
        "research": StepRecord(
            name="research",
            kind="retrieve",
            status="completed",
            output={"collection": "help_center", **passages},
        ),
        "grounded_answer": StepRecord(
            name="grounded_answer",
            kind="model",
            status="completed",
            model="strong",
            # An id nobody retrieved is not reported as a citation.
            output="Refunds take 5 days [refunds.md#2] [made-up.md#9].",
        ),
        "check_citations": StepRecord(
            name="check_citations",
            kind="guard",
            status="completed",
            violations=["- citation_unknown: made-up.md#9"],
        ),
        "review": StepRecord(name="review", kind="approval", status="completed"),
    }
    now = datetime.now(UTC)
    approval = ApprovalState(
        approval_id="review",
        step="review",
        status="approved",
        text="Edited.",
        payload_hash="h2",
        required_role="reviewer",
        required_approvals=1,
        decisions=[
            ReviewerDecision(reviewer="kim", decision="edit", at=now, payload_hash="h1"),
        ],
        requested_at=now,
        deadline=now,
    )

    path = describe_path(result_with(steps, approvals=[approval]))

    assert path == [
        "classify[cheap]",
        "complex",
        "research(help_center: 2 passages)",
        "grounded_answer[strong] cites refunds.md#2",
        "check_citations ✓ after 1 retry",
        "approval: edited by kim",
    ]


def test_path_of_a_question_the_help_center_does_not_cover() -> None:
    steps = {
        "classify": StepRecord(name="classify", kind="model", status="completed", model="cheap"),
        "answer": StepRecord(name="answer", kind="route", status="completed", branch="otherwise"),
        "research": StepRecord(
            name="research",
            kind="retrieve",
            status="completed",
            output={"collection": "help_center", "passages": [], "nothing_relevant": True},
        ),
        "grounded": StepRecord(
            name="grounded", kind="route", status="completed", branch="branches[0]"
        ),
        "let_me_check": StepRecord(
            name="let_me_check", kind="model", status="completed", model="cheap", output="Hm."
        ),
    }

    assert describe_path(result_with(steps)) == [
        "classify[cheap]",
        "complex",
        "research(help_center: nothing relevant)",
        "let_me_check[cheap]",
    ]
