"""Keeping secrets and huge values out of logs.

Every secret a process reads (provider keys, the admin key, the Temporal API
key, the database password, HTTP tools' secrets) is registered here the
moment it is read; the logging processor masks each registered value wherever
it appears in a log event, masks the values of headers that carry credentials
whatever they are, masks `Bearer` tokens, Chorus API keys and URL passwords by
their shape, and truncates any field longer than a few KB, saying its length.
Tracebacks are rendered without local variables (see core.logging), so a
secret in a frame's locals never reaches a log at all.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any

MASK = "***"
MAX_FIELD_CHARS = 4096
"""A log field longer than this is cut, with its length stated."""
MAX_EXCEPTION_CHARS = 16384
"""A rendered traceback gets more room, but not megabytes."""
_CUT_MARGIN = 1024
MIN_SECRET_CHARS = 6
"""Shorter values are not registered: masking them would mangle ordinary text."""
MAX_DEPTH = 8

SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "api_key",
        "apikey",
        "cookie",
        "set-cookie",
        "password",
        "secret",
        "token",
        "admin_key",
        "temporal_api_key",
    }
)
"""Mapping keys (compared in lower case) whose values are masked whatever they are."""

_SHAPES = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"\bchorus_[A-Za-z0-9_-]{16,}"),
    re.compile(r"\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}"),
)
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,31}://[^:/@\s]{0,256}:)[^@\s/]{1,512}@"
)


class SecretRegistry:
    """The secret values this process knows, to be masked in every log line."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def register(self, value: str | None) -> None:
        if value is None or len(value) < MIN_SECRET_CHARS or value in self._values:
            return
        with self._lock:
            self._values = self._values | {value}

    def values(self) -> frozenset[str]:
        return self._values


SECRETS = SecretRegistry()


def register_secret(value: str | None) -> None:
    """Mask `value` in every log line this process writes from now on."""
    SECRETS.register(value)


def url_password(url: str | None) -> str | None:
    """The password of a URL such as `postgresql://user:pass@host/db`."""
    if not url:
        return None
    match = re.search(r"://[^:/@\s]*:([^@\s/]+)@", url)
    return match.group(1) if match else None


def mask_known_secrets(text: str, mask: str = MASK) -> str:
    """`text` with every secret this process registered replaced by `mask`.

    For text that leaves the process by another road than a log line: an
    error message bound for workflow history, where a provider or a server
    may have echoed back the key it was sent."""
    for secret in SECRETS.values():
        if secret in text:
            text = text.replace(secret, mask)
    return text


def redact_text(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """`text` with every known secret and secret-shaped value masked, cut to
    `limit` characters.

    Cut first (with a margin, so a secret straddling the cut is still whole
    when it is masked): masking then costs the same for a 3 GB string as for
    a 4 KB one."""
    length = len(text)
    if length > limit:
        text = text[: limit + _CUT_MARGIN]
    text = mask_known_secrets(text)
    for shape in _SHAPES:
        text = shape.sub(lambda m: (m.group(1) + " " + MASK) if m.lastindex else MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m.group("scheme") + MASK + "@", text)
    if length > limit:
        text = f"{text[:limit]}… [truncated: {length} chars]"
    return text


def redact_value(value: Any, depth: int = 0, limit: int = MAX_FIELD_CHARS) -> Any:
    """A log field made safe: strings redacted and bounded, mappings and
    sequences walked (to a bounded depth), other values by their text when
    it holds a secret."""
    if isinstance(value, str):
        return redact_text(value, limit)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= MAX_DEPTH:
        return redact_text(repr(value), limit)
    if isinstance(value, Mapping):
        return {
            key: MASK
            if isinstance(key, str) and key.lower() in SENSITIVE_KEYS
            else redact_value(item, depth + 1, limit)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, depth + 1, limit) for item in value]
    return redact_text(str(value), limit)


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets and bound every field (runs after
    the exception is rendered, so tracebacks are covered too)."""
    for key in list(event_dict):
        value = event_dict[key]
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = MASK
        elif key == "exception":
            event_dict[key] = redact_value(value, limit=MAX_EXCEPTION_CHARS)
        else:
            event_dict[key] = redact_value(value)
    return event_dict
