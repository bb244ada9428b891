"""Provider API keys, read from the worker's environment by variable name.

Secrets travel by name, never by value: the registry says which variable
holds an alias's key, and only the worker reads it, at call time.
"""

from __future__ import annotations

import os

from activities.gateway.errors import config_error
from activities.gateway.registry import ResolvedEntry
from core.redaction import register_secret


def read_api_key(entry: ResolvedEntry) -> str | None:
    """The key for `entry` (None when its provider takes none).

    Read at call time so a rotated key needs no worker restart. A missing or
    empty variable raises a non-retryable configuration error naming the
    variable, never a value."""
    if entry.api_key_env is None:
        return None
    key = os.environ.get(entry.api_key_env, "").strip()
    if not key:
        raise config_error(
            f"alias {entry.alias!r} needs an API key in environment variable "
            f"{entry.api_key_env}, which is not set (or empty) on this worker"
        )
    register_secret(key)
    return key
