"""The inbox's own settings (`CHORUS_INBOX_*`), one class for one concern."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class InboxSettings(BaseSettings):
    """How long a browser stays signed in, how often the list refreshes, and
    whether the session cookie is `Secure`."""

    model_config = SettingsConfigDict(
        env_prefix="CHORUS_INBOX_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,
    )

    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600)
    """A session ends this long after sign-in (a working day by default)."""
    poll_interval_s: float = Field(default=2.5, ge=0.5, le=60)
    """How often an open list asks for changes (new approvals show within 5 s)."""
    secure_cookie: bool | None = None
    """`Secure` on the session cookie: None decides per request (set when the
    request came over HTTPS, as uvicorn sees it behind a trusted proxy)."""
