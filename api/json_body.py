"""A JSON body sent without a JSON Content-Type is read as JSON.

`curl -d '{...}'` labels its body `application/x-www-form-urlencoded`, and
some clients send no Content-Type at all. FastAPI checks content types
strictly, so such a body reached the route as bytes and the caller got a 422
saying the input "should be a valid dictionary", which names neither the
cause nor the cure. Here a body with no type or the form type that parses as
JSON goes on as `application/json`; one that does not parse is refused with
415 naming the type it came with and the JSON error. No route of this API
takes form data, so nothing that worked before is lost, except the reviewer
inbox's pages (`form_paths`), whose HTML forms pass through untouched.

Strict checking guards browsers against a cross-site form posting a
form-encoded body without a CORS preflight. That needs ambient credentials
(cookies) to do harm, and this API has none: every request carries
`Authorization: Bearer`, which a cross-site form cannot set. The inbox's
session cookie is `SameSite=Strict` and its forms carry a CSRF token.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response
from api.request_body import read_body, replaying

FORM_TYPE = "application/x-www-form-urlencoded"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class JsonBodyMiddleware:
    """Pure ASGI middleware; it reads only bodies with no type or the form type."""

    def __init__(self, app: ASGIApp, *, form_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.form_paths = form_paths
        """Path prefixes whose routes take HTML forms (left untouched)."""

    def _takes_forms(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.form_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in BODY_METHODS
            or self._takes_forms(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return
        media = _media_type(scope)
        if media not in (None, FORM_TYPE):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        if body:
            try:
                json.loads(body)
            except RecursionError:
                pass  # JSON, nested too deep: the route refuses it (api.bodies)
            except ValueError as exc:
                await _refuse(media, exc)(scope, receive, send)
                return
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, replaying(body, receive), send)


def _media_type(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower() or None
    return None


def _refuse(media: str | None, exc: ValueError) -> ASGIApp:
    sent = (
        f"was sent as {media}" + (" (what `curl -d` sends)" if media == FORM_TYPE else "")
        if media
        else "has no Content-Type"
    )
    return error_response(
        415,
        "unsupported_media_type",
        f"the request body {sent} and is not JSON ({exc}); send JSON with "
        "`Content-Type: application/json`, or name the body's own type where an "
        "endpoint takes another (e.g. application/yaml)",
        {"content_type": media, "json_error": str(exc)},
    )
