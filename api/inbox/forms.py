"""HTML form bodies (`application/x-www-form-urlencoded`), read without a
multipart library: the inbox's forms are a handful of short fields.

The API's JSON middleware lets `/inbox` bodies through untouched
(`api.json_body`), so they arrive here as the browser sent them.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

MAX_FIELDS = 16
FORM_TYPE = "application/x-www-form-urlencoded"


class BadForm(Exception):
    """The body is not a form this page sent; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields (the first value of each); BadForm for anything else."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != FORM_TYPE:
        raise BadForm(f"expected a form ({FORM_TYPE}), got {media or 'no content type'}")
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm(f"the form could not be read: {exc}") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def same_origin(request: Request) -> bool:
    """A POST came from a page of this site. Browsers say where a request
    comes from in `Sec-Fetch-Site` (and `Origin`); a request without either is
    not a browser's cross-site post, and its CSRF token still has to match."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    expected = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    return origin.lower() == expected.lower()
