"""One patch marker per run (workflows/patches.py): a new run records only
`BASELINE`, and every change it stands for applies; runs recorded before
it (tests/histories) replay with their own markers (test_replay.py)."""

from __future__ import annotations

import ast
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from tests.workflows.stubs import Harness, Stubs, model
from worker.assembly import create_worker
from workflows.patches import ABSORBED, BASELINE, UnknownPatchError, applies

ROOT = Path(__file__).resolve().parents[2]
CORE_PATCH = "core_patch"


def patch_ids_asked_through_applies() -> set[str]:
    """Every patch id `applies(...)` is called with in workflows/, resolved
    from the module-level string constants it names."""
    asked: set[str] = set()
    constants: dict[str, str] = {}
    trees = [ast.parse(p.read_text()) for p in sorted((ROOT / "workflows").rglob("*.py"))]
    for tree in trees:
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        constants[target.id] = node.value.value
    for tree in trees:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "applies"
            ):
                [arg] = node.args
                assert isinstance(arg, ast.Name), ast.dump(arg)
                asked.add(constants[arg.id])
    return asked


def test_the_baseline_stands_for_exactly_the_patches_workflows_ask() -> None:
    # A typo in ABSORBED would leave a change off for new runs without a
    # marker; a stale entry would hide one that is no longer asked.
    assert patch_ids_asked_through_applies() == ABSORBED


def test_a_change_the_baseline_does_not_stand_for_is_refused_by_name() -> None:
    with pytest.raises(UnknownPatchError, match="'some-later-change'"):
        applies("some-later-change")


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    harness = Harness(temporal_env, task_queue)
    harness.stubs = Stubs()
    async with create_worker(
        temporal_env.client, task_queue=task_queue, activities=harness.stubs.activities
    ):
        yield harness


async def test_a_new_run_records_one_patch_marker_and_one_change_version_upsert(
    chains: Harness,
) -> None:
    approval = {"name": "review", "kind": "approval", "text": "{{ steps.draft.output }}"}
    started = await chains.start([model("draft", "writer"), approval])
    await chains.decide(started, await chains.pending(started))
    result = await chains.finish(started)
    assert result.status == "completed"

    patches: list[str] = []
    change_versions: list[list[str]] = []
    handle = chains.runs.client.get_workflow_handle(started.run_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            attrs = event.marker_recorded_event_attributes
            if attrs.marker_name == CORE_PATCH:
                patches.append(json.loads(attrs.details["patch-data"].payloads[0].data)["id"])
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if "TemporalChangeVersion" in fields.indexed_fields:
                change_versions.append(
                    json.loads(fields.indexed_fields["TemporalChangeVersion"].data)
                )

    # Templates, the run index, the audit with the index row and the cost
    # throttle all applied (the run completed through them); one marker said so.
    assert patches == [BASELINE]
    assert change_versions == [[BASELINE]]
