"""Custom search attributes of chain runs, defined once for every process.

The workflow upserts them and clients filter on them (Temporal UI, `temporal
workflow list --query "ChorusStatus='awaiting_approval'"`); the dev stack and
the test server register them. This module imports only temporalio so it can
be imported inside the workflow sandbox.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

CHAIN_KEY = SearchAttributeKey.for_keyword("ChorusChain")
"""Name of the chain a run executes."""

STATUS_KEY = SearchAttributeKey.for_keyword("ChorusStatus")
"""Coarse run status for ops queries: running, awaiting_approval, completed, failed."""

COST_KEY = SearchAttributeKey.for_float("ChorusCostUsd")
"""Cost spent so far, in USD."""

ALL_KEYS: tuple[SearchAttributeKey, ...] = (CHAIN_KEY, STATUS_KEY, COST_KEY)
"""Every key a Temporal server must know before Chorus runs start on it."""
