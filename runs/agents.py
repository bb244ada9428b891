"""An agent step's child run, as its parent chain run sees it.

An agent step runs as a child workflow whose id is `<parent run id>--<step>`
(workflows/steps/agent.py). Its tool approvals wait in the child, so a
client reading the parent learns of them only if the parent looks there too.
The parent's own `state` query already says which agent steps are running
(their step records), which is exact and immediate, where Temporal's
visibility (`ParentWorkflowId`) is eventually consistent: so the children
are found from the state, and this module says how.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows.types import ApprovalState, RunState

AGENT_RUN_SEPARATOR = "--"
"""Between a parent run's id and an agent step's name in the child's id."""


def agent_run_id(parent_run_id: str, step: str) -> str:
    """The workflow id of the agent step `step` of run `parent_run_id`."""
    return f"{parent_run_id}{AGENT_RUN_SEPARATOR}{step}"


def running_agent_steps(state: RunState) -> list[str]:
    """The agent steps of a run that are running now (their child may be
    waiting for a person), in the order the state lists them."""
    return [
        name
        for name, record in state.steps.items()
        if record.kind == "agent" and record.status == "running"
    ]


@dataclass(frozen=True)
class AgentApproval:
    """A pending approval of a running agent child, and where to decide it."""

    run_id: str
    """The child's workflow id: the run the decision is sent to."""
    step: str
    """The parent's agent step that runs the child."""
    approval: ApprovalState
