"""Where a run stands: one vocabulary for the workflow, the run index, the
API and the CLI."""

from __future__ import annotations

from typing import Literal, get_args

WorkflowRunStatus = Literal[
    "running", "awaiting_approval", "completed", "failed", "rejected", "cancelled"
]
"""What a run's own workflow reports (its `state` query, its result and the
run index rows it writes)."""

RunStatus = Literal[WorkflowRunStatus, "starting", "terminated", "timed_out"]
"""Every status a run can be seen in. `starting`: recorded by the API, not yet
started in Temporal; `rejected`: a reviewer rejected it; `cancelled`,
`terminated`, `timed_out`: ended from outside the workflow."""

RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
