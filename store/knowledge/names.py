"""What a collection or a document may be called.

Document names become citation ids (`refunds.md#2`), so the rules are
stricter than the columns' lengths alone.
"""

from __future__ import annotations

import re

from store.knowledge.errors import InvalidKnowledgeNameError

COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
DOCUMENT_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./()+,=@~-]*$"
"""Document names become citation ids (`refunds.md#2`): no `#`, brackets or spaces."""

_COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)
_DOCUMENT_NAME = re.compile(DOCUMENT_NAME_PATTERN)


def _valid_name(pattern: re.Pattern[str], name: str, max_length: int) -> bool:
    return 0 < len(name) <= max_length and pattern.match(name) is not None


def valid_collection_name(name: str) -> bool:
    """Whether a collection can have this name (lookups skip the database otherwise)."""
    return _valid_name(_COLLECTION_NAME, name, 100)


def valid_document_name(name: str) -> bool:
    """Whether the name fits the document pattern and length (lookups skip
    the database otherwise); `check_document_name` also refuses `..`."""
    return _valid_name(_DOCUMENT_NAME, name, 255)


def check_collection_name(name: str) -> str:
    if not valid_collection_name(name):
        raise InvalidKnowledgeNameError(
            f"invalid collection name {name!r}: 1-100 characters, letters, digits, "
            "'_', '.', '-', starting with a letter, digit or '_'"
        )
    return name


def check_document_name(name: str) -> str:
    if not valid_document_name(name) or ".." in name.split("/"):
        raise InvalidKnowledgeNameError(
            f"invalid document name {name!r}: 1-255 characters, letters, digits and "
            "_ . / ( ) + , = @ ~ -, no spaces, '#' or brackets (it becomes the citation "
            "id `name#position`)"
        )
    return name
