"""Deterministic token counting of the simulator.

Real tokenizers differ per provider and version; tests and demos need counts
they can predict by hand, so the simulator uses a fixed rule of thumb:

- each message (the system prompt counts as one) costs ceil(len(text) / 4) + 3;
- the prompt adds 3 more for priming the reply;
- a reply costs ceil(len(text) / 4), at least 1;
- an embedding input costs ceil(len(text) / 4), at least 1;
- each tool definition sent with a request costs
  ceil(len(name + description + canonical JSON of its parameters) / 4) + 3;
- a tool call, in a reply or in an earlier assistant message, counts as the
  text `name(<canonical JSON of its arguments>)`.

Canonical JSON (sorted keys, no spaces) makes the count independent of how a
client spaced or ordered its JSON, so the same conversation costs the same on
the OpenAI and the Anthropic endpoints, apart from their different message
framing (OpenAI sends one message per tool result, Anthropic one user turn).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

CHARS_PER_TOKEN = 4
PER_MESSAGE_TOKENS = 3
REPLY_PRIMING_TOKENS = 3
PER_TOOL_TOKENS = 3


def text_tokens(text: str) -> int:
    """ceil(len(text) / 4): the cost of a run of text, 0 for an empty one."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def prompt_tokens(message_texts: Iterable[str]) -> int:
    """Prompt size of a chat request given each message's text."""
    return sum(text_tokens(t) + PER_MESSAGE_TOKENS for t in message_texts) + REPLY_PRIMING_TOKENS


def completion_tokens(reply_text: str) -> int:
    """Size of a reply (before any reasoning tokens are added); at least 1."""
    return max(1, text_tokens(reply_text))


def embedding_tokens(text: str) -> int:
    return max(1, text_tokens(text))


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` that costs at most `max_tokens`."""
    return text[: max_tokens * CHARS_PER_TOKEN]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: one spelling per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tool_call_text(name: str, arguments: Any) -> str:
    """How a tool call reads in the prompt (and in `match`) and is counted."""
    return f"{name}({canonical_json(arguments)})"


def tool_definition_tokens(name: str, description: str, parameters: Any) -> int:
    """Cost of offering one tool to the model."""
    return text_tokens(name + description + canonical_json(parameters)) + PER_TOOL_TOKENS
