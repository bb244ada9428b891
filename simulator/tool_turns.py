"""Pairing tool calls with tool results across a conversation, as the real APIs do.

Both OpenAI and Anthropic reject a conversation whose tool results do not
answer the tool calls of the assistant message right before them, and one
where a call is left without a result. An agent loop that gets this wrong
must fail against the simulator exactly as it would against a provider, so
each dialect reduces its messages to `WireTurn`s, `trace_tool_turns` checks
them, and the dialect renders a `ToolTurnError` in its provider's words.

The trace also tells which tool results END the conversation, which is what
`Rule.after_tool` matches when a test scripts a multi-turn tool conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from simulator.models import ToolResultSeen


@dataclass
class WireTurn:
    """One message of a request, as far as tool calls are concerned."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    """(id, tool name) of each tool call an assistant message makes."""
    results: list[tuple[str, int | None]] = field(default_factory=list)
    """(tool call id, content block index or None) of each tool result it carries."""


ToolTurnProblem = Literal["unexpected_result", "unknown_id", "unanswered", "duplicate_id"]


class ToolTurnError(Exception):
    """The conversation's tool calls and results do not pair up.

    kind: "unexpected_result" (a result with no assistant tool calls right
    before it), "unknown_id" (a result whose id matches no call awaiting a
    result), "unanswered" (calls left without results; `message_index` is the
    assistant message that made them), "duplicate_id" (two calls, one id).
    """

    def __init__(
        self,
        kind: ToolTurnProblem,
        message_index: int,
        ids: list[str],
        block_index: int | None = None,
    ) -> None:
        super().__init__(f"{kind} at message {message_index}: {', '.join(ids)}")
        self.kind = kind
        self.message_index = message_index
        self.ids = ids
        self.block_index = block_index


def trace_tool_turns(
    turns: Sequence[WireTurn], *, results_in_next_message_only: bool
) -> list[ToolResultSeen]:
    """Check that results pair with calls; return the results that end the conversation.

    An assistant message's calls must all be answered by the message(s)
    straight after it: by the one next message when
    `results_in_next_message_only` (Anthropic), or by the run of tool
    messages that follows (OpenAI). Raises `ToolTurnError` otherwise.
    """
    seen_ids: set[str] = set()
    pending: dict[str, str] = {}  # call id -> tool name, still awaiting a result
    calls_at: int | None = None  # index of the message whose calls are pending
    accepting = False  # whether the current message may carry results
    trailing: list[ToolResultSeen] = []
    for index, turn in enumerate(turns):
        if turn.results:
            for call_id, block in turn.results:
                if not accepting:
                    raise ToolTurnError("unexpected_result", index, [call_id], block)
                if call_id not in pending:
                    raise ToolTurnError("unknown_id", index, [call_id], block)
                trailing.append(ToolResultSeen(tool_call_id=call_id, name=pending.pop(call_id)))
            if results_in_next_message_only:
                if pending:
                    raise ToolTurnError("unanswered", calls_at or 0, list(pending))
                accepting = False
            continue
        if pending:
            raise ToolTurnError("unanswered", calls_at or 0, list(pending))
        accepting, trailing = False, []
        for call_id, name in turn.calls:
            if call_id in seen_ids:
                raise ToolTurnError("duplicate_id", index, [call_id])
            seen_ids.add(call_id)
            pending[call_id] = name
        if turn.calls:
            accepting, calls_at = True, index
    if pending:
        raise ToolTurnError("unanswered", calls_at or 0, list(pending))
    return trailing
