"""Declarative HTTP tools, loaded from a YAML file (`chains/tools/http.yaml`).

An HTTP tool is a method, a URL template and a JSON Schema for its
arguments: `{name}` placeholders in the URL are filled with URL-encoded
arguments, the other arguments go to the query string (GET, DELETE) or the
JSON body (POST, PUT, PATCH) unless `query:` lists them. Secret headers name
an environment variable that the worker reads at call time; the value never
appears in the file, in workflow history, in errors or in logs.

```yaml
version: 1
tools:
  order_status:
    description: Current status of an order in the orders service.
    method: GET
    base_url: {env: ORDERS_API_URL, default: "http://127.0.0.1:8600"}
    url: /v1/orders/{order_id}
    parameters:
      type: object
      properties: {order_id: {type: string, pattern: "^NW-[0-9]{4}$"}}
      required: [order_id]
    headers:
      Authorization: {env: ORDERS_API_TOKEN, prefix: "Bearer "}
    timeout_s: 10
```

No client-side retries: Temporal owns them. A non-2xx answer becomes
`ToolHttpError`, retryable for 408, 429 and 5xx (after the server's
Retry-After, if it sent one), not retryable for other statuses.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from temporalio.exceptions import ApplicationError

from activities.gateway.errors import ProviderErrorBody, parse_retry_after
from activities.tools.base import Tool, check_tool_name
from activities.tools.errors import (
    InvalidToolArguments,
    ToolDefinitionError,
    config_error,
    scrub,
    tool_timeout,
)
from activities.tools.types import ToolErrorType, ToolInfo
from core.redaction import register_secret

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
IDEMPOTENCY_HEADER = "Idempotency-Key"

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE"})
"""Idempotent by HTTP's own definition; POST and PATCH are not unless the
file says so."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str) -> str:
    # The message never repeats the value: it may be a secret pasted by mistake.
    if not re.match(ENV_NAME_PATTERN, value):
        raise ValueError(
            "must be the NAME of an environment variable (letters, digits, _), not a value"
        )
    return value


class SecretFromEnv(_Strict):
    """A header value read from the worker's environment at call time."""

    env: str
    prefix: str = ""
    """Prepended to the variable's value, e.g. `"Bearer "`."""

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: str) -> str:
        return _env_name(value)


class UrlFromEnv(_Strict):
    """A base URL read from the environment, so one file serves every deployment."""

    env: str
    default: str | None = None

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: str) -> str:
        return _env_name(value)


class HttpToolEntry(_Strict):
    """One HTTP tool as written in the tools file."""

    description: str = Field(min_length=1)
    method: HttpMethod = "GET"
    url: str = Field(min_length=1)
    """Template: `{name}` placeholders are filled with URL-encoded arguments.
    A full URL, or a path when `base_url` is set."""
    base_url: str | UrlFromEnv | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments (an object)."""
    query: list[str] = Field(default_factory=list)
    """POST, PUT, PATCH: arguments sent as query parameters instead of in the
    JSON body. (GET and DELETE send every argument not in the URL as a query
    parameter.)"""
    headers: dict[str, str | SecretFromEnv] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    idempotent: bool | None = None
    """Defaults to true for GET, PUT and DELETE, false for POST and PATCH."""
    requires_approval: bool = False
    max_attempts: int = Field(default=3, ge=1, le=20)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(HEADER_NAME_PATTERN, name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
        return value


class _ToolsFile(_Strict):
    version: int = 1
    tools: dict[str, HttpToolEntry] = Field(default_factory=dict)


def _placeholders(template: str) -> list[str]:
    """The `{name}` fields of a URL template; ValueError for anything fancier."""
    names = []
    for _literal, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(
                f"placeholder {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} must be a plain {{name}}"
            )
        names.append(field)
    return names


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _query_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    return _as_text(value)


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def http_error(
    tool: str,
    method: str,
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    secrets: Iterable[str] = (),
    now: datetime | None = None,
) -> ApplicationError:
    """The `ToolHttpError` for one non-2xx answer (pure: unit-tested as a table).

    Retryable: 408, 429 and 5xx, with `next_retry_delay` from Retry-After when
    the server sent one. Anything else (other 4xx, stray 3xx) would get the
    same answer again. The message names the tool, method, URL (without its
    query) and status, and the server's message with every secret removed.
    """
    retryable = status in (408, 429) or status >= 500
    server_message = scrub(ProviderErrorBody(body).message, secrets) or "(empty body)"
    where = scrub(f"{method} {_without_query(url)}", secrets)
    return ApplicationError(
        f"tool {tool!r}: {where} returned HTTP {status}: {server_message}",
        {"tool": tool, "status": status},
        type=ToolErrorType.HTTP_ERROR,
        non_retryable=not retryable,
        next_retry_delay=parse_retry_after(headers, now) if retryable else None,
    )


class HttpTool(Tool):
    """One declarative HTTP tool, validated when the file is loaded."""

    def __init__(self, name: str, entry: HttpToolEntry) -> None:
        self.entry = entry
        check_tool_name(name)
        schema = entry.parameters
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ToolDefinitionError(
                f"tool {name!r}: field 'parameters' is not a valid JSON Schema: {exc.message}"
            ) from None
        if schema.get("type") != "object":
            raise ToolDefinitionError(
                f"tool {name!r}: field 'parameters' must be a schema of type 'object'"
            )
        properties = set(schema.get("properties") or {})
        required = set(schema.get("required") or [])
        try:
            self.path_params = _placeholders(entry.url)
        except ValueError as exc:
            raise ToolDefinitionError(f"tool {name!r}: field 'url': {exc}") from None
        for param in self.path_params:
            if param not in properties or param not in required:
                raise ToolDefinitionError(
                    f"tool {name!r}: field 'url': placeholder {{{param}}} must be a required "
                    "property of 'parameters'"
                )
        for param in entry.query:
            if param not in properties:
                raise ToolDefinitionError(
                    f"tool {name!r}: field 'query': {param!r} is not a property of 'parameters'"
                )
            if param in self.path_params:
                raise ToolDefinitionError(
                    f"tool {name!r}: field 'query': {param!r} is already a URL placeholder"
                )
        if isinstance(entry.base_url, str):
            self._check_absolute(name, entry.base_url, "base_url")
        elif isinstance(entry.base_url, UrlFromEnv) and entry.base_url.default is not None:
            self._check_absolute(name, entry.base_url.default, "base_url.default")
        elif entry.base_url is None:
            self._check_absolute(name, entry.url, "url")
        self._validator = jsonschema.Draft202012Validator(schema)
        idempotent = (
            entry.idempotent if entry.idempotent is not None else entry.method in IDEMPOTENT_METHODS
        )
        self.info = ToolInfo(
            name=name,
            description=entry.description,
            parameters=schema,
            idempotent=idempotent,
            requires_approval=entry.requires_approval,
            timeout_s=entry.timeout_s,
            max_attempts=entry.max_attempts,
        )

    @staticmethod
    def _check_absolute(name: str, url: str, field: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ToolDefinitionError(
                f"tool {name!r}: field {field!r} must start with http:// or https://, got {url!r}"
            )

    @property
    def accepts_idempotency_key(self) -> bool:
        return True  # sent as the Idempotency-Key header

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        problems = []
        errors = sorted(self._validator.iter_errors(dict(arguments)), key=lambda e: list(e.path))
        for err in errors:
            path = ".".join(str(part) for part in err.absolute_path) or "(arguments)"
            problems.append(f"{path}: {err.message}")
        if problems:
            raise InvalidToolArguments(self.name, problems)
        return dict(arguments)

    # -- one call -------------------------------------------------------------

    def _base_url(self) -> str:
        base = self.entry.base_url
        if base is None or isinstance(base, str):
            return base or ""
        value = os.environ.get(base.env, "").strip() or base.default
        if not value:
            raise config_error(
                f"tool {self.name!r} needs its base URL in environment variable {base.env}, "
                "which is not set (or empty) on this worker",
                self.name,
            )
        if not value.startswith(("http://", "https://")):
            raise config_error(
                f"tool {self.name!r}: environment variable {base.env} must hold an http:// "
                "or https:// URL",
                self.name,
            )
        return value

    def _headers(self) -> tuple[dict[str, str], list[str]]:
        """Headers to send and the secret values among them (for scrubbing)."""
        headers: dict[str, str] = {}
        secrets: list[str] = []
        for header, value in self.entry.headers.items():
            if isinstance(value, str):
                headers[header] = value
                continue
            secret = os.environ.get(value.env, "").strip()
            if not secret:
                raise config_error(
                    f"tool {self.name!r} needs header {header} from environment variable "
                    f"{value.env}, which is not set (or empty) on this worker",
                    self.name,
                )
            headers[header] = f"{value.prefix}{secret}"
            secrets.append(secret)
            register_secret(secret)
        return headers, secrets

    def _request_parts(
        self, arguments: dict[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        """URL, query parameters and JSON body for these arguments."""
        path = self.entry.url.format_map(
            {p: quote(_as_text(arguments[p]), safe="") for p in self.path_params}
        )
        base = self._base_url()
        url = f"{base.rstrip('/')}/{path.lstrip('/')}" if base else path
        rest = {k: v for k, v in arguments.items() if k not in self.path_params}
        if self.entry.method not in BODY_METHODS:
            return url, {k: _query_value(v) for k, v in rest.items()}, None
        query = {k: _query_value(v) for k, v in rest.items() if k in self.entry.query}
        body = {k: v for k, v in rest.items() if k not in self.entry.query}
        return url, query, body

    async def invoke(
        self,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None,
        http: httpx.AsyncClient,
    ) -> Any:
        headers, secrets = self._headers()
        url, query, body = self._request_parts(arguments)
        headers.setdefault("Accept", "application/json")
        if idempotency_key:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        method = self.entry.method
        try:
            response = await http.request(
                method,
                url,
                params=query or None,
                json=body,
                headers=headers,
                timeout=httpx.Timeout(self.entry.timeout_s),
                follow_redirects=False,
            )
        except httpx.TimeoutException:
            raise tool_timeout(self.name, self.entry.timeout_s) from None
        except httpx.HTTPError as exc:
            raise ApplicationError(
                f"tool {self.name!r}: {scrub(f'{method} {_without_query(url)}', secrets)} "
                f"could not be reached ({type(exc).__name__}: "
                f"{scrub(str(exc), secrets) or 'no detail'})",
                {"tool": self.name},
                type=ToolErrorType.HTTP_ERROR,
            ) from None
        if not 200 <= response.status_code < 300:
            raise http_error(
                self.name,
                method,
                url,
                response.status_code,
                response.headers,
                response.content,
                secrets=secrets,
            )
        return _response_output(response)


def _response_output(response: httpx.Response) -> Any:
    """The JSON body, or the text when the server did not send JSON."""
    if not response.content:
        return None
    content_type = response.headers.get("content-type", "")
    if "json" in content_type:
        try:
            return response.json()
        except ValueError:
            pass
    return response.text


# -- the file ------------------------------------------------------------------


def _format_validation_error(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err["loc"])
        if len(loc) >= 2 and loc[0] == "tools":
            field = ".".join(str(p) for p in loc[2:])
            where = f"tool {loc[1]!r}" + (f", field {field!r}" if field else "")
        else:
            where = "top level" if not loc else f"field {'.'.join(str(p) for p in loc)!r}"
        lines.append(f"{where}: {err['msg']}")
    return f"invalid tools file {source}:\n  " + "\n  ".join(lines)


def http_tools_from_dict(data: Any, *, source: str = "<dict>") -> list[HttpTool]:
    """Validate `{"tools": {name: entry}}` completely; ToolDefinitionError
    names the file, every bad tool and field."""
    if not isinstance(data, Mapping):
        raise ToolDefinitionError(f"invalid tools file {source}: expected a mapping at top level")
    try:
        parsed = _ToolsFile.model_validate(data)
    except ValidationError as exc:
        raise ToolDefinitionError(_format_validation_error(source, exc)) from None
    tools: list[HttpTool] = []
    problems: list[str] = []
    for name, entry in parsed.tools.items():
        try:
            tools.append(HttpTool(name, entry))
        except ToolDefinitionError as exc:
            problems.append(str(exc))
    if problems:
        raise ToolDefinitionError(f"invalid tools file {source}:\n  " + "\n  ".join(problems))
    return tools


def load_http_tools(path: str | Path) -> list[HttpTool]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ToolDefinitionError(f"cannot read tools file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ToolDefinitionError(f"tools file {path} is not valid YAML: {exc}") from exc
    return http_tools_from_dict(data or {}, source=str(path))
