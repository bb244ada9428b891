"""Recorded histories of the shipped chains replay without non-determinism.

A failure here means a change to workflows/ alters the commands a run in
flight would see on replay: guard it with `workflow.patched` (see
tests/histories/record.py for how to record new histories).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker.plugin import chorus_replayer

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = sorted((ROOT / "tests" / "histories").glob("*.json"))
SHIPPED = sorted(p.stem for p in (ROOT / "chains").glob("*.yaml") if p.stem != "models")


def replayer() -> Replayer:
    return chorus_replayer()


def recorded_workflow_id(path: Path) -> str:
    """The id the run had when recorded: agents' child ids derive from it
    (`<run id>--<step>`), so replay must use the same one."""
    for event in json.loads(path.read_text())["events"]:
        child = event.get("startChildWorkflowExecutionInitiatedEventAttributes")
        if child:
            return str(child["workflowId"]).rsplit("--", 1)[0]
    return path.stem


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(recorded_workflow_id(path), path.read_text())

    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@pytest.mark.parametrize("chain", SHIPPED)
def test_every_shipped_chain_has_a_recorded_history(chain: str) -> None:
    assert any(p.stem.startswith(f"{chain}__") for p in HISTORIES), (
        f"no history for chains/{chain}.yaml: run `make histories`"
    )


async def test_replay_detects_a_changed_workflow() -> None:
    """The guard itself works: a history whose recorded commands no longer
    match the code (here: a model call's activity type edited) fails replay."""
    path = ROOT / "tests" / "histories" / "classify_then_answer__simple__v1.json"
    data = json.loads(path.read_text())
    for event in data["events"]:
        attrs = event.get("activityTaskScheduledEventAttributes")
        if attrs:
            attrs["activityType"]["name"] = "chorus.some_other_activity"
    history = WorkflowHistory.from_json("tampered", json.dumps(data))

    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
