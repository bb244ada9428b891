"""Workflow code behaves the same with and without Temporal's sandbox
(`Settings.workflow_sandbox`, CHORUS_WORKFLOW_SANDBOX), and what the sandbox
would catch at run time is caught before a commit by workflows/ruff.toml."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner

from core.settings import Settings
from tests.workflows.stubs import Harness, Stubs, model
from worker.assembly import create_worker
from worker.plugin import chorus_replayer, workflow_runner

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHORUS_WORKFLOW_SANDBOX", raising=False)
    assert Settings().workflow_sandbox is True
    monkeypatch.setenv("CHORUS_WORKFLOW_SANDBOX", "false")
    assert Settings().workflow_sandbox is False
    assert isinstance(workflow_runner(False), UnsandboxedWorkflowRunner)
    assert not isinstance(workflow_runner(True), UnsandboxedWorkflowRunner)


@pytest.fixture
async def unsandboxed(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    harness = Harness(temporal_env, task_queue)
    harness.stubs = Stubs()
    async with create_worker(
        temporal_env.client,
        task_queue=task_queue,
        activities=harness.stubs.activities,
        sandboxed=False,
    ):
        yield harness


async def test_a_run_made_without_the_sandbox_replays_in_it(unsandboxed: Harness) -> None:
    approval = {"name": "review", "kind": "approval", "text": "{{ steps.draft.output }}"}
    steps = [model("draft", "writer"), approval, model("send", "mailer")]
    started = await unsandboxed.start(steps)
    await unsandboxed.decide(started, await unsandboxed.pending(started))
    result = await unsandboxed.finish(started)
    assert result.status == "completed" and list(result.steps) == ["draft", "review", "send"]

    history = await started.handle.fetch_history()
    replayed = await chorus_replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("import time\n\nx = time.time()\n", "time.time"),
        ("from datetime import datetime\n\nx = datetime.now()\n", "datetime.datetime.now"),
        ("import random\n\nx = random.random()\n", "random"),
        ("import uuid\n\nx = uuid.uuid4()\n", "uuid.uuid4"),
        ("import os\n\nx = os.environ['HOME']\n", "os.environ"),
    ],
    ids=["time", "datetime", "random", "uuid", "environ"],
)
def test_non_deterministic_calls_in_workflow_code_fail_the_lint(code: str, rule: str) -> None:
    def lint(path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RUFF), "check", "--no-cache", "--stdin-filename", path, "-"],
            input=code,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )

    in_workflows = lint("workflows/probe.py")
    assert in_workflows.returncode == 1 and f"`{rule}` is banned" in in_workflows.stdout
    # The same code is fine where I/O and clocks belong (activities).
    assert lint("activities/probe.py").returncode == 0
