"""Structured logging for every Chorus process, configured once.

structlog renders both its own events and the standard-library records of
libraries (temporalio, httpx, uvicorn), so one process writes one format:
JSON lines when stderr is not a terminal (log shippers, the dev stack's log
files), a readable console format on a terminal. Inside an activity every
event carries the workflow id, run id, activity type and attempt, so a line in
a log file leads straight to the run in the Temporal UI.

Workflow code logs through `workflow.logger` instead: it is quiet during
replay, which structlog cannot know about.
"""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
import structlog.tracebacks
from temporalio import activity

from core.redaction import redact_event, register_secret, url_password
from core.settings import Settings

_configured = False

MAX_TRACEBACK_FRAMES = 20
"""Frames of a traceback kept in a log record (the outermost and innermost)."""

_QUIET_LIBRARIES = {"httpx": logging.WARNING, "httpcore": logging.WARNING}
"""Libraries that log every request at INFO: their lines would drown the rest."""


def add_temporal_activity_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add workflow_id, run_id, activity_type and attempt when called from
    inside a Temporal activity (a no-op anywhere else)."""
    if activity.in_activity():
        info = activity.info()
        event_dict.setdefault("workflow_id", info.workflow_id)
        event_dict.setdefault("run_id", info.workflow_run_id)
        event_dict.setdefault("activity_type", info.activity_type)
        event_dict.setdefault("attempt", info.attempt)
    return event_dict


def register_settings_secrets(settings: Settings) -> None:
    """Mask the secrets the settings hold in every log line: the bootstrap
    admin key, the Temporal API key, the codec server's token, the payload
    encryption keys (from the variable or the file) and the database password."""
    for secret in (
        settings.admin_key,
        settings.temporal_api_key,
        settings.codec_auth_token,
        settings.encryption_keys,
    ):
        if secret is not None:
            register_secret(secret.get_secret_value())
    try:
        keys = settings.encryption_keyring().keys.values()
    except ValueError:  # a bad key setting is reported where it is used
        keys = []
    for key in keys:
        register_secret(base64.b64encode(key).decode())
    register_secret(url_password(settings.database_url))
    register_secret(url_password(settings.redis_url))


def _use_json(settings: Settings) -> bool:
    if settings.log_format == "json":
        return True
    if settings.log_format == "console":
        return False
    return not sys.stderr.isatty()


def configure_logging(settings: Settings, *, force: bool = False) -> None:
    """Configure structlog and the standard library's root logger to write to
    stderr. Idempotent: later calls do nothing unless `force` is set."""
    global _configured
    if _configured and not force:
        return

    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_temporal_activity_context,
    ]
    renderer: structlog.typing.Processor
    # Tracebacks never carry frames' local variables (a provider key, a
    # caller's bearer token, a database URL), and are rendered before the
    # redaction processor so it sees their text too.
    if _use_json(settings):
        renderer = structlog.processors.JSONRenderer()
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(
                    show_locals=False, max_frames=MAX_TRACEBACK_FRAMES
                )
            )
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        shared.append(structlog.processors.format_exc_info)
    shared.append(redact_event)
    register_settings_secrets(settings)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, quiet_level in _QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(max(level, quiet_level))
    _configured = True


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; safe to call before `configure_logging`."""
    return structlog.stdlib.get_logger(name)
