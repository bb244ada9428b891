"""Names that cross the Temporal boundary: workflow types, their queries and
updates, and activity types.

They never change once released: a run in flight on a deployed worker, and
every recorded history, refers to them by these strings. Workflows, activity
hosts, the run client and tests all import them from here.
"""

from __future__ import annotations

# -- workflows -------------------------------------------------------------------------

WORKFLOW_NAME = "ChainWorkflow"
"""A chain run."""
AGENT_WORKFLOW_NAME = "ChorusAgentWorkflow"
"""An agent step's child workflow; it can wait for approvals too."""
STATE_QUERY = "state"
"""Query: a run's live state (steps, usage, status)."""
PENDING_APPROVALS_QUERY = "pending_approvals"
"""Query: the approvals a run (or an agent child) waits for."""
DECIDE = "decide"
"""Name of the Update (validated, answered) and of the Signal (fire and forget)
that carry a reviewer's decision."""

# -- activities ------------------------------------------------------------------------

CALL_MODEL = "chorus.call_model"
"""One model call through the gateway (journaled, so a retry never pays twice)."""
DESCRIBE_MODELS = "chorus.describe_models"
"""Local activity that snapshots prices and limits of aliases into history."""
RUN_TOOL = "chorus.run_tool"
DESCRIBE_TOOLS = "chorus.describe_tools"
"""Local activity that snapshots the tools a chain names (schemas, policies)."""
RETRIEVE = "chorus.retrieve"
RECORD_RUN = "chorus.record_run"
"""Local activity: the run index row."""
RECORD_APPROVAL = "chorus.record_approval"
"""Local activity: one approval decision in the audit log."""

# -- evaluations (issue 14: `chorus compare`) ----------------------------------------
EVAL_WORKFLOW_NAME = "ChorusEvalWorkflow"
"""An evaluation: every case of an eval set through every chain variant."""
EVAL_PROGRESS_QUERY = "eval_progress"
"""Query: an evaluation's progress (cases done per variant, cost so far)."""
EVAL_BEGIN = "chorus.evals.begin"
"""Activity: the evaluation's row in the application database."""
EVAL_SCORE_CASE = "chorus.evals.score_case"
"""Activity: score one case's run and store the score once."""
EVAL_FINISH = "chorus.evals.finish"
"""Activity: the report (summaries, recommendation) from the stored scores."""
