"""Statements built once per database backend and reused for every write.

Building an ORM statement per call (coercing each value, then its cache key)
cost the hot writes (the reply journal, the run index, the audit log) about
three times the SQLite work itself, so they build Core statements with bound
parameters once per dialect and look them up by the session's backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlmodel import Session

T = TypeVar("T")

BACKENDS = ("postgresql", "sqlite")


class PerBackend(Generic[T]):
    """`build(dialect)` run once per backend; calling it with a session
    returns what was built for the session's backend."""

    def __init__(self, build: Callable[[str], T]) -> None:
        self._build = build
        self._built: dict[str, T] = {}

    def __call__(self, session: Session) -> T:
        dialect = session.get_bind().dialect.name
        if dialect not in BACKENDS:
            raise NotImplementedError(f"the store supports sqlite and postgresql, not {dialect}")
        found = self._built.get(dialect)
        if found is None:
            found = self._built[dialect] = self._build(dialect)
        return found
