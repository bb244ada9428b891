"""Deterministic token counting of the simulator.

Real tokenizers differ per provider and version; tests and demos need counts
they can predict by hand, so the simulator uses a fixed rule of thumb:

- each message (the system prompt counts as one) costs ceil(len(text) / 4) + 3;
- the prompt adds 3 more for priming the reply;
- a reply costs ceil(len(text) / 4), at least 1;
- an embedding input costs ceil(len(text) / 4), at least 1.

Tool definitions sent with a request are not counted. A tool call in a reply
counts as its name plus its JSON arguments.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

CHARS_PER_TOKEN = 4
PER_MESSAGE_TOKENS = 3
REPLY_PRIMING_TOKENS = 3


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
