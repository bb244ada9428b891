"""Citations in a model's answer (`[refunds.md#2]`) and the ids a retrieve
step returned, for guards that check an answer cites what was retrieved.

Pure and deterministic: guards run these inside workflows, and the
evaluation's scoring (activities/evals/scoring.py) reads citations the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["cited_ids", "retrieved_ids_of"]

_CITATION_ID = r"[^\s\[\],;#](?:[^\[\]\n,;#]{0,198}[^\s\[\],;#])?#\d{1,6}"
_CITATION = re.compile(r"\[\s*(" + _CITATION_ID + r"(?:\s*[,;]\s*" + _CITATION_ID + r")*)\s*\]")
"""`[refunds.md#2]`, or several ids in one bracket: `[refunds.md#2; faq.md#0]`."""
_ONE_ID = re.compile(_CITATION_ID)


def cited_ids(text: str) -> list[str]:
    """Citation ids (`document#position`) in square brackets, in order of first use."""
    ids: dict[str, None] = {}
    for m in _CITATION.finditer(text):
        for one in _ONE_ID.finditer(m.group(1)):
            ids.setdefault(one.group(0).strip(), None)
    return list(ids)


def retrieved_ids_of(output: Any) -> list[str]:
    """Citation ids of a retrieve step's output (`{"passages": [{"id": ...}]}`);
    empty for anything else, so a guard over a missing retrieval fails closed."""
    if isinstance(output, BaseModel):
        output = output.model_dump(mode="json")
    passages = output.get("passages") if isinstance(output, Mapping) else None
    if not isinstance(passages, list):
        return []
    ids = [p.get("id") for p in passages if isinstance(p, Mapping)]
    return [i for i in ids if isinstance(i, str)]
