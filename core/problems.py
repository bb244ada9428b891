"""Typed reasons a request is refused, free of HTTP.

The run client (`runs`) and the API's service modules raise these; one table in
`api.errors` turns each family into its HTTP status, so a status code is
decided in exactly one place. Every message names what is wrong, and `code`
is a stable, machine-readable name clients may branch on.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApiProblem(Exception):
    """Base of every refusal: a stable `code`, a message for people, optional details."""

    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code  # type: ignore[misc]


# -- families (one HTTP status each, see api.errors.PROBLEM_STATUS) --------------------


class NotFound(ApiProblem):
    code = "not_found"


class Conflict(ApiProblem):
    code = "conflict"


class Forbidden(ApiProblem):
    code = "forbidden"


class Unprocessable(ApiProblem):
    code = "unprocessable"


class UnsupportedMediaType(ApiProblem):
    code = "unsupported_media_type"


class Unavailable(ApiProblem):
    code = "unavailable"


class UpstreamTimeout(ApiProblem):
    code = "timeout"


# -- concrete problems ---------------------------------------------------------------


class ChainNotFound(NotFound):
    code = "chain_not_found"


class RunNotFound(NotFound):
    code = "run_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class RunConflict(Conflict):
    """A client run_id is already taken by a run with another chain or input."""

    code = "run_id_conflict"


class RunNotRunning(Conflict):
    code = "run_not_running"


class KeyExists(Conflict):
    code = "key_exists"


class InvalidInput(Unprocessable):
    """The run input does not match the chain's input_schema (details: paths)."""

    code = "invalid_input"


class InvalidChainSpec(Unprocessable):
    """A published chain spec has problems (details: each problem's path and message)."""

    code = "invalid_chain_spec"


class TemporalUnavailable(Unavailable):
    code = "temporal_unavailable"


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"
