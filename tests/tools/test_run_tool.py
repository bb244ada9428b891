"""`run_tool` and `describe_tools` with a real activity context: every way a
tool can fail comes back as a typed `ApplicationError`, never as a crash."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.tools.activities import MAX_OUTPUT_BYTES, ToolActivities
from activities.tools.errors import ToolError
from activities.tools.registry import ToolRegistry
from activities.tools.types import DescribeToolsInput, ToolErrorType
from core.names import DESCRIBE_TOOLS, RUN_TOOL
from tests.activity_env import run_activity
from tests.tools.conftest import ToolEnv


class Weather(BaseModel):
    city: str
    celsius: float


def make_registry(log: list[Any]) -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    async def weather(city: str) -> Weather:
        """Today's weather."""
        return Weather(city=city, celsius=21.5)

    @registry.tool
    def sync_add(a: int, b: int = 2) -> int:
        """Adds in a worker thread."""
        log.append(("thread", threading.current_thread().name, activity.info().workflow_id))
        return a + b

    @registry.tool(timeout_s=0.2)
    async def sleepy(seconds: float) -> str:
        """Sleeps."""
        await asyncio.sleep(seconds)
        return "woke"

    @registry.tool(timeout_s=0.2)
    def sleepy_sync(seconds: float) -> str:
        """Sleeps in a thread."""
        time.sleep(seconds)
        return "woke"

    @registry.tool
    async def own_timeout() -> None:
        """Its own call times out, which is not the tool's deadline."""
        raise TimeoutError("upstream read timed out")

    @registry.tool
    def broken(n: int) -> float:
        """Divides by zero."""
        return n / 0

    @registry.tool
    async def refuses(why: str, retry_after_s: float | None = None) -> None:
        """Raises a ToolError."""
        raise ToolError(
            f"cannot: {why}", non_retryable=retry_after_s is None, retry_after=retry_after_s
        )

    @registry.tool
    async def app_error() -> None:
        """Raises a plain ApplicationError of its own."""
        raise ApplicationError("custom", type="Custom", non_retryable=True)

    @registry.tool
    async def unserialisable() -> Any:
        """Returns something JSON cannot carry."""
        return {"handle": object()}

    @registry.tool
    async def huge() -> str:
        """Returns too much."""
        return "x" * (MAX_OUTPUT_BYTES + 1)

    @registry.tool(idempotent=False)
    async def keyed(amount: int, idempotency_key: str | None = None) -> dict[str, Any]:
        """Records the key it was given."""
        log.append(("key", idempotency_key))
        return {"amount": amount, "key": idempotency_key}

    @registry.tool(idempotent=True)
    async def keyed_idempotent(idempotency_key: str | None = None) -> str | None:
        """An idempotent tool that takes a key."""
        return idempotency_key

    @registry.tool(timeout_s=2)
    async def slow(seconds: float) -> str:
        """Slow enough to heartbeat."""
        await asyncio.sleep(seconds)
        return "done"

    return registry


@pytest.fixture
def calls() -> list[Any]:
    return []


@pytest.fixture
def acts(calls: list[Any], http: httpx.AsyncClient) -> ToolActivities:
    return ToolActivities(make_registry(calls), http)


async def test_pydantic_results_are_dumped_to_json(acts: ToolActivities, env: ToolEnv) -> None:
    result = await env.run(acts, "weather", city="Reno")
    assert result.tool == "weather"
    assert result.output == {"city": "Reno", "celsius": 21.5}
    assert result.latency_ms >= 0


async def test_sync_tools_run_in_a_thread_with_the_activity_context(
    acts: ToolActivities, env: ToolEnv, calls: list[Any]
) -> None:
    result = await env.run(acts, "sync_add", a="40")
    assert result.output == 42
    [(_, thread_name, workflow_id)] = calls
    assert thread_name != threading.main_thread().name
    assert workflow_id == env.workflow_id


@pytest.mark.parametrize("tool", ["sleepy", "sleepy_sync"])
async def test_a_tool_past_its_timeout_is_a_retryable_timeout(
    acts: ToolActivities, env: ToolEnv, tool: str
) -> None:
    started = time.perf_counter()
    err = await env.fail(acts, tool, seconds=0.6)
    assert time.perf_counter() - started < 0.5  # the deadline, not the sleep
    assert err.type == ToolErrorType.TIMEOUT and not err.non_retryable
    assert err.message == f"tool {tool!r} did not finish within 0.2 s"


async def test_a_timeout_raised_by_the_tool_itself_is_a_failure(
    acts: ToolActivities, env: ToolEnv
) -> None:
    err = await env.fail(acts, "own_timeout")
    assert err.type == ToolErrorType.FAILED and not err.non_retryable
    assert "TimeoutError: upstream read timed out" in err.message


async def test_an_exception_is_a_retryable_failure_naming_it(
    acts: ToolActivities, env: ToolEnv
) -> None:
    with capture_logs() as logs:
        err = await env.fail(acts, "broken", n=1)
    assert err.type == ToolErrorType.FAILED and not err.non_retryable
    assert err.message == "tool 'broken' failed: ZeroDivisionError: division by zero"
    [failed] = [e for e in logs if e["event"] == "tool_call.failed"]
    assert failed["error_type"] == ToolErrorType.FAILED and failed["retryable"] is True
    assert failed["workflow_id"] == env.workflow_id and failed["tool"] == "broken"


async def test_tool_errors_keep_their_retryability_and_delay(
    acts: ToolActivities, env: ToolEnv
) -> None:
    final = await env.fail(acts, "refuses", why="over the limit")
    assert final.type == ToolErrorType.FAILED and final.non_retryable
    assert final.message == "tool 'refuses' failed: cannot: over the limit"

    later = await env.fail(acts, "refuses", why="busy", retry_after_s=7)
    assert not later.non_retryable and later.next_retry_delay == timedelta(seconds=7)

    custom = await env.fail(acts, "app_error")
    assert custom.type == ToolErrorType.FAILED and custom.non_retryable
    assert "custom" in custom.message


@pytest.mark.parametrize(
    ("tool", "phrase"), [("unserialisable", "not JSON-serialisable"), ("huge", "byte limit")]
)
async def test_unusable_results_fail_without_retry(
    acts: ToolActivities, env: ToolEnv, tool: str, phrase: str
) -> None:
    err = await env.fail(acts, tool)
    assert err.type == ToolErrorType.FAILED and err.non_retryable
    assert phrase in err.message


async def test_unknown_tools_and_bad_arguments_are_not_retried(
    acts: ToolActivities, env: ToolEnv
) -> None:
    unknown = await env.fail(acts, "nope")
    assert unknown.type == ToolErrorType.UNKNOWN and unknown.non_retryable
    assert "'nope'" in unknown.message and "weather" in unknown.message

    with capture_logs() as logs:
        bad = await env.fail(acts, "sync_add", a="forty", c=1)
    assert bad.type == ToolErrorType.INVALID_ARGUMENTS and bad.non_retryable
    problems = ["a: Input should be a valid integer, unable to parse string as an integer"]
    problems.append("c: Extra inputs are not permitted")
    assert bad.details == ({"tool": "sync_add", "problems": problems},)
    assert "forty" not in str(logs)  # argument values are not logged


async def test_idempotency_keys_reach_the_tools_that_take_them(
    acts: ToolActivities, env: ToolEnv, calls: list[Any]
) -> None:
    given = await env.run(acts, "keyed", "order-7-refund", amount=5)
    assert given.output == {"amount": 5, "key": "order-7-refund"}
    # Without a key, a non-idempotent tool gets one stable across this
    # activity's retries (workflow id, run id, activity id).
    derived = await env.run(acts, "keyed", amount=5)
    assert derived.output["key"] == env.activity_key
    other = await ToolEnv().run(acts, "keyed", amount=5)
    assert other.output["key"] != env.activity_key  # another activity, another key
    # An idempotent tool only gets a key when the caller gives one.
    assert (await env.run(acts, "keyed_idempotent")).output is None
    assert (await env.run(acts, "keyed_idempotent", "k")).output == "k"


async def test_a_long_tool_heartbeats(acts: ToolActivities) -> None:
    env = ToolEnv(heartbeat_timeout=timedelta(seconds=0.3))
    result = await env.run(acts, "slow", seconds=0.45)
    assert result.output == "done"
    assert len(env.heartbeats) >= 2  # every 0.1 s: a third of the heartbeat timeout


async def test_a_fast_tool_makes_no_heartbeat(acts: ToolActivities, env: ToolEnv) -> None:
    await env.run(acts, "weather", city="Reno")
    assert env.heartbeats == []


async def test_describe_tools(acts: ToolActivities) -> None:
    result = await run_activity(
        acts.describe_tools, DescribeToolsInput(names=["keyed", "nope", "weather", "nope"])
    )
    assert sorted(result.tools) == ["keyed", "weather"]
    assert result.unknown == ["nope"]
    keyed = result.tools["keyed"]
    assert keyed.idempotent is False and keyed.parameters["required"] == ["amount"]


def test_activities_have_their_stable_names(acts: ToolActivities) -> None:
    names = [activity._Definition.must_from_callable(fn).name for fn in acts.activities]
    assert names == [RUN_TOOL, DESCRIBE_TOOLS]


async def test_owned_client_is_closed() -> None:
    acts = ToolActivities(ToolRegistry())
    await acts.aclose()
    assert acts._http.is_closed
