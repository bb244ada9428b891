"""The error types a failed run reports are part of the API: pinned here."""

from __future__ import annotations

from core.chain_errors import CHAIN_ERROR_TYPES, ChainErrorType
from workflows.failures import ChainFailure, ChainRejected, is_budget_failure

RELEASED = {
    "UNKNOWN_MODEL_ALIAS": "UnknownModelAlias",
    "UNKNOWN_TOOL": "UnknownTool",
    "TEMPLATE_ERROR": "TemplateError",
    "TEMPLATE_LIMIT_EXCEEDED": "TemplateLimitExceeded",
    "NO_ROUTE_MATCHED": "NoRouteMatched",
    "STEP_LIMIT_EXCEEDED": "StepLimitExceeded",
    "BUDGET_EXCEEDED": "BudgetExceeded",
    "ALL_MODELS_FAILED": "AllModelsFailed",
    "STRUCTURED_OUTPUT_INVALID": "StructuredOutputInvalid",
    "RETRIEVAL_FAILED": "RetrievalFailed",
    "TOOL_FAILED": "ToolFailed",
    "TOOL_INVALID_ARGUMENTS": "ToolInvalidArguments",
    "GUARD_FAILED": "GuardFailed",
    "AGENT_FAILED": "AgentFailed",
    "AUDIT_WRITE_FAILED": "AuditWriteFailed",
    "INVALID_CHAIN_SPEC": "InvalidChainSpec",
    "REJECTED": "Rejected",
}


def test_released_values_never_change() -> None:
    assert {name: getattr(ChainErrorType, name) for name in RELEASED} == RELEASED


def test_the_tuple_lists_every_constant_once() -> None:
    constants = {k: v for k, v in vars(ChainErrorType).items() if k.isupper()}
    assert sorted(CHAIN_ERROR_TYPES) == sorted(constants.values())
    assert len(set(CHAIN_ERROR_TYPES)) == len(CHAIN_ERROR_TYPES)


def test_failures_carry_the_constants() -> None:
    assert ChainRejected("no").error_type == ChainErrorType.REJECTED
    assert is_budget_failure(ChainFailure(ChainErrorType.BUDGET_EXCEEDED, "over"))
    assert not is_budget_failure(ChainFailure(ChainErrorType.GUARD_FAILED, "bad"))
