"""The activity options reproduce the timeouts and retry policies the recorded
runs were scheduled with: a run in flight keeps behaving the same after an
upgrade (replay does not compare these, so this test does)."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.common import RetryPolicy

from activities.gateway.types import DescribeModelsResult, ModelInfo
from activities.tools.types import DescribeToolsResult, ToolInfo
from core.chain_spec import AgentStep, ModelStep, RetrySpec
from workflows.activity_options import DEFAULT_ACTIVITY_OPTIONS, ActivityOptions, retry_policy
from workflows.agent_types import AgentInput
from workflows.tool_calls import tool_retry_policy
from workflows.types import ChainInput
from workflows.validate import iter_steps

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = sorted((ROOT / "tests" / "histories").glob("*.json"))
OPTIONS = DEFAULT_ACTIVITY_OPTIONS


def _decode(payloads: dict[str, Any]) -> Any:
    payload = payloads["payloads"][0]
    return json.loads(base64.b64decode(payload["data"])) if "data" in payload else None


def _duration(text: str | None) -> timedelta:
    return timedelta(seconds=float((text or "0s").removesuffix("s")))


def _policy(proto: dict[str, Any] | None) -> RetryPolicy | None:
    if proto is None:
        return None
    return RetryPolicy(
        initial_interval=_duration(proto.get("initialInterval")),
        backoff_coefficient=proto.get("backoffCoefficient", 2.0),
        maximum_interval=_duration(proto["maximumInterval"])
        if "maximumInterval" in proto
        else None,
        maximum_attempts=proto.get("maximumAttempts", 0),
    )


class Recorded:
    """What a recorded run knew: its steps, models and tools."""

    def __init__(self, path: Path) -> None:
        # Histories of the first workflow version were recorded before model
        # calls got their deadline margin (commit 718cff2).
        self.options = (
            dataclasses.replace(OPTIONS, model_timeout_margin_s=0.0)
            if path.stem.endswith("__v1")
            else OPTIONS
        )
        self.events = json.loads(path.read_text())["events"]
        started = self.events[0]["workflowExecutionStartedEventAttributes"]
        raw = _decode(started["input"])
        self.retries: dict[str, RetrySpec] = {}
        self.models: dict[str, ModelInfo] = {}
        self.tools: dict[str, ToolInfo] = {}
        if started["workflowType"]["name"] == "ChorusAgentWorkflow":
            agent = AgentInput.model_validate(raw)
            self.retries[agent.step.name] = agent.retry
            self.models, self.tools = agent.models, agent.tools
            return
        spec = ChainInput.model_validate(raw).spec
        for _, step in iter_steps(spec.steps):
            if isinstance(step, ModelStep | AgentStep):
                self.retries[step.name] = step.retry or spec.defaults or OPTIONS.model_retry
        for event in self.events:
            marker = event.get("markerRecordedEventAttributes")
            if not marker or "result" not in marker.get("details", {}):
                continue
            result = _decode(marker["details"]["result"])
            if isinstance(result, dict) and "models" in result:
                self.models.update(DescribeModelsResult.model_validate(result).models)
            elif isinstance(result, dict) and "tools" in result:
                self.tools.update(DescribeToolsResult.model_validate(result).tools)

    def scheduled(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        found = []
        for event in self.events:
            attrs = event.get("activityTaskScheduledEventAttributes")
            if attrs:
                found.append((attrs["activityType"]["name"], _decode(attrs["input"]), attrs))
        return found


def expected(
    run: Recorded, activity: str, inp: dict[str, Any], recorded_policy: dict[str, Any] | None = None
) -> tuple[timedelta, timedelta, RetryPolicy | None]:
    """(start-to-close, heartbeat, retry policy) the options give; a None
    policy means the server's default."""
    options = run.options
    if activity == "chorus.call_model":
        info = run.models[inp["alias"]]
        return (
            options.model_call_timeout(info),
            options.model_heartbeat_timeout(info),
            retry_policy(run.retries[inp["step"]]),
        )
    if activity == "chorus.run_tool":
        info = run.tools[inp["tool"]]
        policy = tool_retry_policy(info, inp.get("idempotency_key"), options)
        return options.tool_call_timeout(info), timedelta(0), policy
    if activity == "chorus.retrieve":
        return options.retrieve_timeout, timedelta(0), None
    if activity == "chorus.record_approval":
        # Histories recorded before `audit_retry` bounded it carry the server's default.
        bounded = recorded_policy is not None and "maximumAttempts" in recorded_policy
        return options.audit_timeout, timedelta(0), options.audit_retry if bounded else None
    raise AssertionError(f"no expectation for {activity}")


SERVER_DEFAULT = RetryPolicy(maximum_interval=timedelta(seconds=100))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_activities_were_scheduled_with_these_options(path: Path) -> None:
    run = Recorded(path)
    for activity, inp, attrs in run.scheduled():
        start_to_close, heartbeat, policy = expected(run, activity, inp, attrs.get("retryPolicy"))
        assert _duration(attrs.get("startToCloseTimeout")) == start_to_close, activity
        assert _duration(attrs.get("heartbeatTimeout")) == heartbeat, activity
        assert _policy(attrs.get("retryPolicy")) == (policy or SERVER_DEFAULT), activity


def test_the_histories_cover_every_scheduled_activity() -> None:
    kinds = {activity for path in HISTORIES for activity, _, _ in Recorded(path).scheduled()}
    assert kinds == {
        "chorus.call_model",
        "chorus.run_tool",
        "chorus.retrieve",
        "chorus.record_approval",
    }


def test_local_activity_defaults() -> None:
    """Local activities leave no timeouts in history: pinned here instead."""
    assert OPTIONS.describe_timeout == timedelta(seconds=10)
    assert OPTIONS.run_index_timeout == timedelta(seconds=10)
    assert OPTIONS.run_index_retry == RetryPolicy(
        maximum_attempts=8, maximum_interval=timedelta(seconds=10)
    )


def test_options_are_frozen() -> None:
    with pytest.raises(AttributeError):
        OPTIONS.audit_timeout = timedelta(seconds=1)  # type: ignore[misc]
    assert ActivityOptions() == OPTIONS


def _retry_window(policy: RetryPolicy) -> timedelta:
    """How long the backoff between the first and the last attempt adds up to."""
    assert policy.maximum_attempts > 0, "unbounded"
    interval, total = policy.initial_interval, timedelta(0)
    for _ in range(policy.maximum_attempts - 1):
        total += interval
        interval = min(interval * policy.backoff_coefficient, policy.maximum_interval or interval)
    return total


def test_record_writes_retry_a_bounded_while() -> None:
    """No record write retries forever (a run waits for its decision Updates,
    so an endless audit retry held runs open for good), yet a short database
    outage costs only a late answer."""
    audit = _retry_window(OPTIONS.audit_retry)
    assert timedelta(minutes=2) <= audit <= timedelta(minutes=10), audit
    assert _retry_window(OPTIONS.run_index_retry) <= timedelta(minutes=2)
