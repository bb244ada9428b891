"""Personal data detectors for guards: they live in core/pii.py, shared with
the evaluation's scoring so both agree on what personal data is; this module
keeps the name guards (and the sandbox passthrough list) import.
"""

from __future__ import annotations

from core.pii import (
    PII_KINDS,
    PII_NAMES,
    PiiKind,
    allowed_contact_problem,
    find_pii,
    redact_pii,
)

__all__ = [
    "PII_KINDS",
    "PII_NAMES",
    "PiiKind",
    "allowed_contact_problem",
    "find_pii",
    "redact_pii",
]
