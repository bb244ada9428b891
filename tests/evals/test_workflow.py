"""EvalWorkflow against the real Temporal dev server, simulator and database:
every case through every variant as child chain runs, scored once, with the
approvals counted and never waited on, the budget stopping it with partial
results kept, and continue-as-new keeping the history bounded."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError

from core.names import WORKFLOW_NAME
from runs.evals import new_eval_id
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule
from store.evals import get_evaluation
from tests.evals.conftest import EvalBench, tiny_set
from worker.plugin import chorus_replayer
from workflows.evals.budget import STOPPED_BY_BUDGET
from workflows.evals.facts import child_run_id

pytestmark = pytest.mark.timeout(120)


async def test_every_case_runs_through_every_variant_and_is_scored_once(
    bench: EvalBench, sim: SimulatorControl, temporal_env: Any
) -> None:
    eval_set = tiny_set(bench.marker)
    inp = bench.client.prepare(eval_set, bench.variants("qa_quick", "qa_careful"), concurrency=3)
    handle = await bench.client.start(inp)

    report = await handle.result()

    by_name = {v.variant: v for v in report.variants}
    assert (by_name["qa_quick"].passed, by_name["qa_quick"].cases) == (2, 3)
    assert (by_name["qa_careful"].passed, by_name["qa_careful"].cases) == (3, 3)
    # The refund ticket asks a person on both variants; the run never waited.
    assert by_name["qa_quick"].approval_rate == pytest.approx(1 / 3)
    assert by_name["qa_careful"].cost_usd > by_name["qa_quick"].cost_usd > 0
    assert report.recommended == "qa_careful"  # quick is 33 points behind
    assert (report.cases_scored, report.cases_total, report.stopped_reason) == (6, 6, None)
    rows = bench.scores(inp.eval_id)
    assert Counter((r.variant, r.case_id) for r in rows) == {
        (v, c.id): 1 for v in ("qa_quick", "qa_careful") for c in eval_set.cases
    }
    failing = next(r for r in rows if not r.passed)
    assert (failing.variant, failing.case_id) == ("qa_quick", "returns")
    # One model call per case and variant: nothing ran twice.
    calls = await sim.calls(request_id_prefix=inp.eval_id)
    assert len(calls) == 6
    # The children are ordinary chain runs under ids derived from the case.
    child = temporal_env.client.get_workflow_handle(child_run_id(inp.eval_id, "qa_quick", "refund"))
    description = await child.describe()
    assert description.workflow_type == WORKFLOW_NAME
    assert description.status == WorkflowExecutionStatus.COMPLETED
    row = get_evaluation(bench.engine, inp.eval_id)
    assert row is not None and row.status == "completed"
    assert row.report is not None and row.report["recommended"] == "qa_careful"


async def test_progress_query_counts_cases_per_variant(bench: EvalBench) -> None:
    inp = bench.client.prepare(
        tiny_set(bench.marker), bench.variants("qa_quick", "qa_careful"), concurrency=2
    )
    handle = await bench.client.start(inp)
    await handle.result()

    progress = await bench.client.progress(inp.eval_id)

    assert progress is not None
    assert progress.status == "completed"
    assert progress.cases_done == progress.cases_total == 6
    assert {p.variant: (p.done, p.passed) for p in progress.variants} == {
        "qa_quick": (3, 2),
        "qa_careful": (3, 3),
    }
    assert progress.spent_usd == pytest.approx(sum(p.cost_usd for p in progress.variants))
    assert progress.reserved_usd == 0


async def test_budget_exhaustion_stops_the_evaluation_and_keeps_partial_results(
    bench: EvalBench,
) -> None:
    eval_set = tiny_set(bench.marker)
    # A strong-model call reserves its worst case (120 output tokens at $15/M,
    # about $0.0019) and costs about $0.0002: this budget lets two strong
    # cases start, and the third finds too little left for its reservation.
    budget = 0.00215
    inp = bench.client.prepare(
        eval_set,
        bench.variants("qa_careful", "qa_quick"),
        concurrency=1,
        max_cost_usd=budget,
    )

    report = await (await bench.client.start(inp)).result()

    assert report.stopped_reason == STOPPED_BY_BUDGET
    rows = bench.scores(inp.eval_id)
    assert 0 < len(rows) < 6
    assert report.cases_scored == len(rows)
    progress = await bench.client.progress(inp.eval_id)
    assert progress is not None and progress.status == "stopped"
    assert progress.spent_usd <= budget
    row = get_evaluation(bench.engine, inp.eval_id)
    assert row is not None and (row.status, row.stopped_reason) == ("stopped", STOPPED_BY_BUDGET)


async def test_continue_as_new_keeps_counters_and_runs_no_case_twice(
    bench: EvalBench, sim: SimulatorControl, temporal_env: Any
) -> None:
    inp = bench.client.prepare(
        tiny_set(bench.marker),
        bench.variants("qa_quick", "qa_careful"),
        concurrency=2,
        cases_per_run=2,
    )
    handle = await bench.client.start(inp)

    report = await handle.result()

    assert report.cases_scored == 6
    first = temporal_env.client.get_workflow_handle(inp.eval_id, run_id=handle.result_run_id)
    assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    # A run's history grows with the cases it finished, not with the eval set:
    # two cases here (a child's 3 events, the scoring activity's 3 and the
    # workflow tasks between them: at most 20 a case), plus its own start.
    history = await first.fetch_history()
    assert len(history.events) <= 2 * 20 + 20, len(history.events)
    # And it replays on the code that ran it (no non-determinism).
    replay = await chorus_replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert replay.replay_failure is None, replay.replay_failure
    assert len(bench.scores(inp.eval_id)) == 6
    assert len(await sim.calls(request_id_prefix=inp.eval_id)) == 6
    progress = await bench.client.progress(inp.eval_id)
    assert progress is not None and progress.cases_done == 6


async def test_a_second_start_of_the_same_evaluation_id_is_refused(bench: EvalBench) -> None:
    from runs.evals import EvalConflict

    eval_id = new_eval_id()
    inp = bench.client.prepare(tiny_set(bench.marker), bench.variants("qa_quick"), eval_id=eval_id)
    await (await bench.client.start(inp)).result()

    with pytest.raises(EvalConflict, match=eval_id):
        await bench.client.start(inp)
    assert len(bench.scores(eval_id)) == 3


def test_bad_input_is_refused_before_anything_starts(bench: EvalBench) -> None:
    from core.problems import Unprocessable

    eval_set = tiny_set(bench.marker)
    quick = bench.variants("qa_quick")
    cases = [
        ({"concurrency": 0}, "concurrency must be between 1 and 64, not 0"),
        ({"max_cost_usd": -1.0}, "max_cost_usd must be a positive amount of USD, not -1.0"),
        ({"judge_alias": "nope"}, "judge alias 'nope' is not in this deployment"),
    ]
    for kwargs, message in cases:
        with pytest.raises(Unprocessable, match=message):
            bench.client.prepare(eval_set, quick, **kwargs)
    with pytest.raises(Unprocessable, match="variants must be distinct"):
        bench.client.prepare(eval_set, quick + quick)
    data = eval_set.model_dump(mode="json", exclude_none=True)
    data["cases"][0]["input"] = {"text": "no message field"}
    from core.evals.spec import EvalSet

    odd = EvalSet.model_validate(data)
    with pytest.raises(Unprocessable, match=r"case 'returns' .* not a valid input for variant"):
        bench.client.prepare(odd, quick)


async def test_a_judge_grades_each_answer_and_its_cost_is_reported_apart(
    bench: EvalBench, sim: SimulatorControl
) -> None:
    await sim.add_rules(Rule(match="You grade a customer-support answer", json={"score": 0.75}))
    inp = bench.client.prepare(
        tiny_set(bench.marker), bench.variants("qa_quick"), judge_alias="judge"
    )

    report = await (await bench.client.start(inp)).result()

    rows = bench.scores(inp.eval_id)
    assert [r.score["judge_score"] for r in rows] == [0.75, 0.75, 0.75]
    assert all(r.score["judge_cost_usd"] > 0 for r in rows)
    (summary,) = report.variants
    assert summary.judge_cost_usd == pytest.approx(sum(r.score["judge_cost_usd"] for r in rows))
    # The variant's own cost leaves the judge out.
    assert summary.cost_usd == pytest.approx(sum(r.cost_usd for r in rows))
    assert report.judge_alias == "judge"


async def test_a_cancelled_evaluation_keeps_its_scores_and_records_why_it_stopped(
    bench: EvalBench, sim: SimulatorControl, temporal_env: Any
) -> None:
    await sim.add_faults(Fault(kind="slow", match=f"{bench.marker} when will", delay_s=30, times=2))
    inp = bench.client.prepare(tiny_set(bench.marker), bench.variants("qa_quick"), concurrency=3)
    handle = await bench.client.start(inp)
    deadline = asyncio.get_running_loop().time() + 30
    while len(bench.scores(inp.eval_id)) < 2:
        assert asyncio.get_running_loop().time() < deadline, "two cases never scored"
        await asyncio.sleep(0.05)

    await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    row = get_evaluation(bench.engine, inp.eval_id)
    assert row is not None and (row.status, row.stopped_reason) == ("stopped", "cancelled")
    assert row.report is not None and row.report["cases_scored"] == 2
    assert len(bench.scores(inp.eval_id)) == 2
    hung = temporal_env.client.get_workflow_handle(
        child_run_id(inp.eval_id, "qa_quick", "shipping")
    )
    assert (await hung.describe()).status == WorkflowExecutionStatus.CANCELED
