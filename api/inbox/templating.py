"""The inbox's Jinja2 environment: templates shipped inside the package,
autoescaping on, and the few filters the pages share (ages, countdowns,
money) so every page words them the same way."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import jinja2
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"


def _span(seconds: float) -> str:
    seconds = abs(int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """`5m ago`, for ages."""
    if value is None:
        return "—"
    now = now or datetime.now(UTC)
    return f"{_span((now - value).total_seconds())} ago"


def countdown(value: datetime | None, now: datetime | None = None) -> str:
    """`in 1h 05m` or `overdue by 3m`, for deadlines."""
    if value is None:
        return "no deadline"
    now = now or datetime.now(UTC)
    left = (value - now).total_seconds()
    return f"in {_span(left)}" if left >= 0 else f"overdue by {_span(left)}"


def usd(value: float | None) -> str:
    """Dollars to the cent from $1, else to four places, or to the first
    non-zero digit below that: a run that spent $0.00003 never reads $0.0000."""
    if value is None:
        return "—"
    if value >= 1:
        return f"${value:,.2f}"
    places = 4
    while value and round(value, places) == 0 and places < 8:
        places += 1
    return f"${value:.{places}f}"


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else ""


def clock(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


@cache
def static_version() -> str:
    """A hash of the static files, appended to their URLs so a new release is
    fetched at once while unchanged files stay cached."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, countdown=countdown, usd=usd, iso=iso, clock=clock)
    env.globals["static_version"] = static_version
    env.globals["now_utc"] = lambda: datetime.now(UTC)
    return Jinja2Templates(env=env)
