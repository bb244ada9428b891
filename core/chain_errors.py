"""Why a chain run failed: the `ApplicationError.type` values a run ends with.

A run that fails raises `ApplicationError(type=...)` with one of these; the
API returns it as `error.type` and `ChainResult.error_type` carries it. The
values are recorded in workflow histories and read by API clients, so they
never change once released: add new ones, never rename.

Tool and agent steps can also end a run with the type their cause carried (a
tool's `ToolErrorType`, or one of these raised inside the agent's child
workflow); `TOOL_FAILED` and `AGENT_FAILED` are used only when the cause has
no type of its own.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CHAIN_ERROR_TYPES", "ChainErrorType"]


class ChainErrorType:
    """`ApplicationError.type` values of a failed (or rejected) chain run."""

    UNKNOWN_MODEL_ALIAS: Final = "UnknownModelAlias"
    """The chain names a model alias the worker's registry does not know
    (checked once, before the first step runs)."""

    UNKNOWN_TOOL: Final = "UnknownTool"
    """The chain names a tool the worker's registry does not know (checked
    once, before the first step runs). Same value as the tool activity's
    `ToolErrorType.UNKNOWN`."""

    TEMPLATE_ERROR: Final = "TemplateError"
    """A prompt, text, argument or condition template failed to render or
    evaluate against the run's context."""

    TEMPLATE_LIMIT_EXCEEDED: Final = "TemplateLimitExceeded"
    """A template went over a rendering limit (output size, loop steps, a
    value's size, a width or precision, nesting, memory): it would have
    exhausted the worker, so the step fails instead of retrying forever."""

    NO_ROUTE_MATCHED: Final = "NoRouteMatched"
    """A route step found no branch whose condition held, and has no
    `otherwise`."""

    STEP_LIMIT_EXCEEDED: Final = "StepLimitExceeded"
    """The run reached its `limits.max_steps` model calls (agents' calls
    count too)."""

    BUDGET_EXCEEDED: Final = "BudgetExceeded"
    """A model call's worst-case cost did not fit in what is left of the run's
    budget (and no `budget_fallback` fitted either); nothing was called."""

    ALL_MODELS_FAILED: Final = "AllModelsFailed"
    """Every alias of a model step (its model, fallbacks and budget fallback)
    failed after Temporal's retries."""

    STRUCTURED_OUTPUT_INVALID: Final = "StructuredOutputInvalid"
    """A model step with an `output_schema` kept answering with output that
    does not match it after its re-asks."""

    RETRIEVAL_FAILED: Final = "RetrievalFailed"
    """A retrieve step's activity failed after its retries."""

    TOOL_FAILED: Final = "ToolFailed"
    """A tool step's activity failed and its error carried no type of its
    own. Same value as the tool activity's `ToolErrorType.FAILED`."""

    TOOL_INVALID_ARGUMENTS: Final = "ToolInvalidArguments"
    """The arguments a reviewer approved for a tool step are not a JSON
    object. Same value as the tool activity's `ToolErrorType.INVALID_ARGUMENTS`
    (arguments its schema refused)."""

    GUARD_FAILED: Final = "GuardFailed"
    """A guard step's target output broke its rules (after the retries the
    guard allows, when it retries)."""

    AGENT_FAILED: Final = "AgentFailed"
    """An agent step's child workflow failed with an error that carried no
    type of its own."""

    AUDIT_WRITE_FAILED: Final = "AuditWriteFailed"
    """An approval's deadline passed and its timeout policy decided (reject,
    approve or escalate), but the audit log would not take the row (the
    database refused it, or stayed down through every retry). Nobody is
    waiting to be told, as a reviewer's `decide` is, so the run stops
    rather than act on a decision the audit log does not hold."""

    INVALID_CHAIN_SPEC: Final = "InvalidChainSpec"
    """The run was started with a chain the run client would have refused
    (a step referring to one that does not exist, say): started by a client
    that skipped the checks (a raw Temporal client, the Temporal CLI). The
    run fails at once naming every problem, instead of failing its workflow
    task on every retry."""

    REJECTED: Final = "Rejected"
    """A reviewer (or an approval's timeout policy) rejected an approval: the
    run ends as `rejected`, a business outcome rather than a failure."""


CHAIN_ERROR_TYPES: Final[tuple[str, ...]] = (
    ChainErrorType.UNKNOWN_MODEL_ALIAS,
    ChainErrorType.UNKNOWN_TOOL,
    ChainErrorType.TEMPLATE_ERROR,
    ChainErrorType.TEMPLATE_LIMIT_EXCEEDED,
    ChainErrorType.NO_ROUTE_MATCHED,
    ChainErrorType.STEP_LIMIT_EXCEEDED,
    ChainErrorType.BUDGET_EXCEEDED,
    ChainErrorType.ALL_MODELS_FAILED,
    ChainErrorType.STRUCTURED_OUTPUT_INVALID,
    ChainErrorType.RETRIEVAL_FAILED,
    ChainErrorType.TOOL_FAILED,
    ChainErrorType.TOOL_INVALID_ARGUMENTS,
    ChainErrorType.GUARD_FAILED,
    ChainErrorType.AGENT_FAILED,
    ChainErrorType.AUDIT_WRITE_FAILED,
    ChainErrorType.INVALID_CHAIN_SPEC,
    ChainErrorType.REJECTED,
)
"""Every type a chain run raises itself."""
