"""One error shape for every refusal: `{"error": {"code", "message", "details"}}`.

Whatever refuses a request (a route, a dependency, FastAPI's request
validation, Starlette's routing, an unexpected crash), the client sees the
same JSON object, so it can branch on `error.code` without parsing prose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.bodies import refused_body
from core import problems
from core.logging import get_logger

log = get_logger(__name__)


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable name, e.g. `run_id_conflict`.")
    message: str = Field(description="What is wrong, for people.")
    details: Any = Field(default=None, description="Structured details (paths, limits...).")


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorBody


PROBLEM_STATUS: tuple[tuple[type[problems.ApiProblem], int], ...] = (
    (problems.NotFound, 404),
    (problems.Conflict, 409),
    (problems.Forbidden, 403),
    (problems.Unprocessable, 422),
    (problems.UnsupportedMediaType, 415),
    (problems.Unavailable, 503),
    (problems.UpstreamTimeout, 504),
)
"""The one place a problem family becomes an HTTP status (most specific first)."""

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


def status_of(problem: problems.ApiProblem) -> int:
    for family, status in PROBLEM_STATUS:
        if isinstance(problem, family):
            return status
    return 400


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def http_error(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> HTTPException:
    """An HTTPException that renders in the stable shape (for routes and dependencies)."""
    return HTTPException(
        status_code=status,
        detail={"code": code, "message": message, "details": details},
        headers=dict(headers) if headers else None,
    )


def validation_details(errors: Sequence[Any]) -> list[dict[str, str]]:
    """FastAPI/pydantic errors as `{path, message, type}`, without echoing the input."""
    details = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        details.append(
            {
                "path": ".".join(loc) or "<request>",
                "message": str(error.get("msg", "invalid")),
                "type": str(error.get("type", "")),
            }
        )
    return details


async def _problem_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, problems.ApiProblem)
    return error_response(status_of(exc), exc.code, exc.message, exc.details)


async def _http_exception_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if isinstance(detail, dict) and "code" in detail and "message" in detail:
        code, message, details = detail["code"], detail["message"], detail.get("details")
    else:
        code = _DEFAULT_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = str(detail) if detail else _phrase(exc.status_code)
        details = None
    return error_response(exc.status_code, code, message, details, exc.headers)


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    refused = refused_body(request)
    if refused is not None:
        # The body broke an input limit (`api.bodies`): its problem, named by
        # path, is the answer rather than "not a valid object". A body that
        # is not JSON keeps the code it always had.
        code = "invalid_request" if refused.code == "invalid_json" else refused.code
        return error_response(422, code, refused.message, refused.details)
    details = validation_details(exc.errors())
    first = details[0] if details else {"path": "<request>", "message": "invalid request"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return error_response(
        422, "invalid_request", f"{first['path']}: {first['message']}{more}", details
    )


async def _database_down_handler(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database error", method=request.method, path=request.url.path, error=str(exc))
    first_line = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return error_response(503, "database_unavailable", f"the database is unavailable: {first_line}")


async def _crash_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", method=request.method, path=request.url.path)
    return error_response(500, "internal_error", "internal server error (see the API's log)")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(problems.ApiProblem, _problem_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    # Connection-level failures only: a constraint violation stays a bug (500).
    app.add_exception_handler(OperationalError, _database_down_handler)
    app.add_exception_handler(InterfaceError, _database_down_handler)
    app.add_exception_handler(Exception, _crash_handler)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error shape for `statuses`."""
    return {status: {"model": ErrorResponse, "description": _phrase(status)} for status in statuses}
