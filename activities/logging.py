"""The structlog logger an activity logs through.

Every activity's lines carry the run they belong to (workflow id, run id,
activity type, attempt) plus what the activity is about (step, alias, tool,
collection), so a line in a log file leads straight to the run in the
Temporal UI.
"""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity


def activity_logger(name: str, **context: Any) -> Any:
    """A logger named `name` bound to the current activity and `context`.

    Call it inside the activity, once per call: a module-level proxy would be
    frozen by structlog's cache_logger_on_first_use to whatever configuration
    came first."""
    info = activity.info()
    return structlog.get_logger(name).bind(
        workflow_id=info.workflow_id,
        run_id=info.workflow_run_id,
        activity=info.activity_type,
        attempt=info.attempt,
        **context,
    )
