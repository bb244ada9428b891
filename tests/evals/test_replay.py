"""Recorded EvalWorkflow histories replay without non-determinism: a change to
workflows/evals/ that alters the commands an evaluation in flight would see
fails here (guard it with `workflow.patched`; record new histories with
`python -m tests.evals.record_history --tag TAG`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from worker.plugin import chorus_replayer

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("eval__*.json"))


def test_there_are_recorded_evaluations() -> None:
    assert len(HISTORIES) >= 2, "record them: python -m tests.evals.record_history --tag v1"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_evaluation_replays(path: Path) -> None:
    history = WorkflowHistory.from_json("eval-recorded", path.read_text())

    result = await chorus_replayer().replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
