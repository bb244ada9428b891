"""The JSON Schema `format`s Chorus checks, the same on every machine.

jsonschema's own `FORMAT_CHECKER` checks `date-time`, `uri` and others only
when optional packages happen to be installed, so two worker images could
give one guard two verdicts, and a replayed history a different one. These
checkers use the standard library alone; a format not listed here is not
checked (as JSON Schema allows), everywhere alike.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import date, time

from jsonschema import FormatChecker

_DATE_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)([Zz]|[+-]\d{2}:\d{2})$"
)
_TIME = re.compile(r"^(\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)([Zz]|[+-]\d{2}:\d{2})$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]*$")
_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

FORMAT_CHECKER = FormatChecker(formats=())
"""Checks exactly the formats below, with no optional dependency."""
CHECKED_FORMATS = ("date-time", "date", "time", "email", "uri", "uuid", "ipv4", "ipv6", "hostname")


def _valid_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _valid_clock(text: str) -> bool:
    hms, _, fraction = text.partition(".")
    try:
        time.fromisoformat(hms)
    except ValueError:
        return hms.endswith(":60")  # a leap second is valid RFC 3339
    return not fraction or fraction.isdigit()


@FORMAT_CHECKER.checks("date-time")
def is_date_time(value: object) -> bool:
    """RFC 3339 date-time, time zone required."""
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.match(value)
    return bool(match) and _valid_date(match.group(1)) and _valid_clock(match.group(2))


@FORMAT_CHECKER.checks("date")
def is_date(value: object) -> bool:
    return not isinstance(value, str) or (
        bool(re.match(r"^\d{4}-\d{2}-\d{2}$", value)) and _valid_date(value)
    )


@FORMAT_CHECKER.checks("time")
def is_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    match = _TIME.match(value)
    return bool(match) and _valid_clock(match.group(1))


@FORMAT_CHECKER.checks("email")
def is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(_EMAIL.match(value))


@FORMAT_CHECKER.checks("uri")
def is_uri(value: object) -> bool:
    """An absolute URI (a scheme, then no character RFC 3986 forbids)."""
    return not isinstance(value, str) or bool(_URI.match(value))


@FORMAT_CHECKER.checks("uuid")
def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


@FORMAT_CHECKER.checks("ipv4")
def is_ipv4(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


@FORMAT_CHECKER.checks("ipv6")
def is_ipv6(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


@FORMAT_CHECKER.checks("hostname")
def is_hostname(value: object) -> bool:
    if not isinstance(value, str):
        return True
    labels = value.rstrip(".").split(".")
    return 0 < len(value) <= 253 and all(_HOSTNAME_LABEL.match(label) for label in labels)
