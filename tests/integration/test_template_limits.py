"""Template bombs fail their run cleanly, on a real worker: the run fails at
once with `TemplateLimitExceeded`, its workflow task never fails (so nothing
retries), no model is called, and the worker goes on serving other runs.
Histories recorded before the limits still replay."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.exceptions import ApplicationError

from core.chain_errors import ChainErrorType
from core.chain_spec import ChainSpec
from runs.client import RunClient
from simulator.control import SimulatorControl
from tests.integration.conftest import ChainRunner, load_spec
from worker.plugin import chorus_replayer
from workflows import patches, templating
from workflows.template_sandbox import LEGACY_LIMITS
from workflows.types import ChainResult

BOMBS = {
    # The four of issue 8.
    "namespace_doubling": (
        "{% set ns = namespace(s=input.seed) %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}"
    ),
    "format_width": "{{ '{:>300000000}'.format(1) }}",
    "center_filter": "{{ input.seed | center(10**12) }}",
    "nested_ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}"
    ),
    # And relatives.
    "macro_recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "printf_width": "{{ '%300000000d' % 1 }}",
    "output_size": "{% for i in range(10000) %}{{ input.seed * 500 }}{% endfor %}",
}


def prompt_chain(registry: Any, prompt: str) -> ChainSpec:
    return load_spec(
        {
            "name": "template_limits",
            "steps": [{"name": "answer", "kind": "model", "model": "cheap", "prompt": prompt}],
        },
        registry,
    )


async def workflow_task_failures(handle: Any) -> int:
    failed = 0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failed += 1
    return failed


def run_as_before_the_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    """New runs ask each change's own patch and no baseline, as the code did
    before workflows/patches.py, in every module that imported its functions
    (the workflow modules are passed through the sandbox: one copy each)."""
    applies, ask_baseline = patches.applies, patches.ask_baseline
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith("workflows."):
            continue
        if getattr(module, "applies", None) is applies:
            monkeypatch.setattr(module, "applies", workflow.patched)
        if getattr(module, "ask_baseline", None) is ask_baseline:
            monkeypatch.setattr(module, "ask_baseline", lambda: False)


async def patch_markers(handle: Any) -> list[str]:
    """The ids of the `workflow.patched` markers in a run's history."""
    markers = []
    async for event in handle.fetch_history_events():
        attrs = event.marker_recorded_event_attributes
        if (
            event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and attrs.marker_name == "core_patch"
        ):
            markers.append(json.loads(attrs.details["patch-data"].payloads[0].data)["id"])
    return markers


async def test_template_bombs_fail_their_runs_cleanly_and_the_worker_keeps_serving(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    started = time.monotonic()
    handles = {
        name: await runner.start(prompt_chain(registry, prompt), {"seed": "ab"})
        for name, prompt in BOMBS.items()
    }
    outcomes = {}
    for name, handle in handles.items():
        with pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(handle.result(), timeout=30)
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError), (name, cause)
        outcomes[name] = (cause, ChainResult.model_validate(cause.details[0]))
    bombs_done = time.monotonic() - started

    for name, (cause, partial) in outcomes.items():
        assert cause.type == ChainErrorType.TEMPLATE_LIMIT_EXCEEDED, (name, cause.message)
        assert cause.non_retryable
        assert cause.message.startswith("answer.prompt: template limit exceeded: "), name
        assert partial.status == "failed" and partial.error_type == "TemplateLimitExceeded"
        # Failed by the workflow code in its first task: nothing was retried.
        assert await workflow_task_failures(handles[name]) == 0, name
        # The limits are a change the run's one baseline marker stands for.
        assert await patch_markers(handles[name]) == [patches.BASELINE]
    assert "characters or items long" in outcomes["namespace_doubling"][0].message
    assert "300000000" in outcomes["format_width"][0].message
    assert "1000000000000" in outcomes["center_filter"][0].message
    assert "more than 200000 steps" in outcomes["nested_ranges"][0].message
    assert await sim.calls() == []  # no prompt reached a model
    assert bombs_done < 20, f"{len(BOMBS)} bombs took {bombs_done:.1f} s"

    # The same worker still serves an ordinary run.
    normal = prompt_chain(
        registry, "{% for t in input.tags %}[{{ t | upper }}]{% endfor %} {{ input.seed }}"
    )
    result = await asyncio.wait_for(
        runner.run(normal, {"seed": "ab", "tags": ["x", "y"]}), timeout=30
    )
    assert result.status == "completed"
    assert [c.outcome for c in result.steps["answer"].calls] == ["ok"]
    (call,) = await sim.calls()
    assert "[X][Y] ab" in call.prompt

    # The failed runs replay (the limits and the marker are deterministic).
    replayer = chorus_replayer()
    for name, handle in handles.items():
        history = await handle.fetch_history()
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert replayed.replay_failure is None, (name, replayed.replay_failure)


async def test_a_run_recorded_before_the_limits_replays_unchanged(
    runner: ChainRunner, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt over today's limits that rendered before they existed (here:
    a 250,000-step loop) replays as it ran: the limit trips, the history has
    no marker, so the template renders again without limits."""
    prompt = (
        "{% for i in range(500) %}{% for j in range(500) %}{% endfor %}{% endfor %}{{ input.seed }}"
    )
    spec = prompt_chain(registry, prompt)

    # The code before the limits: no limits, no marker, and each change asked
    # through its own patch (before workflows/patches.py's baseline).
    monkeypatch.setattr(templating, "DEFAULT_LIMITS", LEGACY_LIMITS)
    run_as_before_the_baseline(monkeypatch)
    templating._compiled_template.cache_clear()
    old = await RunClient(runner.client, task_queue=runner.task_queue).start(
        spec, {"seed": "ab"}, run_id=f"test-legacy-{uuid.uuid4()}"
    )
    result = await asyncio.wait_for(old.handle.result(), timeout=30)
    assert result.status == "completed"
    markers = await patch_markers(old.handle)
    assert templating.TEMPLATE_LIMITS_PATCH not in markers and patches.BASELINE not in markers
    monkeypatch.undo()

    history: WorkflowHistory = await old.handle.fetch_history()
    replayed = await chorus_replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure

    # A new run of the same chain fails on the limit instead.
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(runner.run(spec, {"seed": "ab"}), timeout=30)
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == ChainErrorType.TEMPLATE_LIMIT_EXCEEDED
