"""Citation parsing for guards: it lives in core/citations.py, shared with the
evaluation's scoring; this module keeps the name guards (and the sandbox
passthrough list) import.
"""

from __future__ import annotations

from core.citations import cited_ids, retrieved_ids_of

__all__ = ["cited_ids", "retrieved_ids_of"]
