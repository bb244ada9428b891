"""Incidental words of a query: identifiers and proper names.

A customer's ticket names things no article does and no article needs to:
an order number ("NW-1003", "LK-20431"), a discount code ("SPRING20"), a
product ("Ridgeline boots"), a person ("Thanks, Maria") or a place ("Hello
from Melbourne"). They say which order or whose, not what the ticket is
about, so they must neither lower a passage's score (as an unknown word
does, see `store.knowledge.scoring`) nor be typo-corrected into a word they
are not ("Dana" -> "data").

Which words they are can only be read from the query as typed, before
folding loses the capitals, so this module looks at the raw text:

- an identifier is a token mixing letters and digits, alone ("SPRING20",
  "40L") or joined by `-`, `/`, `#`, `:` or `.` ("NW-1003", "2:14pm"); every
  word of it is incidental, known to the collection or not (the "LK" of an
  order number is not a question about the article that mentions it);
- a name is a word written with a capital inside a sentence (not its first
  word, not "I", not a word of four or more capitals, which is shouting:
  "I WANT TO CANCLE"); it is incidental only when the collection does not
  know it, so "Trail Box", "Visa" or "Hawaii" still match.

Pure numbers are not identifiers: "30 days" or "$75" may be what a
passage answers; an unknown number is dropped by `store.knowledge.search`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from store.knowledge.terms import WORD, fold

_TOKEN = re.compile(r"[^\W_]+(?:[-/#:.][^\W_]+)*")
"""Alphanumeric runs, joined by the separators identifiers use."""
_SENTENCE_ENDS = frozenset(".!?:;")
_OPENERS = frozenset("\"'([\u201c\u2018")
_PRONOUN_I = "I"
_LONGEST_ACRONYM = 3
"""Capitals up to this length are an acronym ("BC", "REI"), a name; longer, shouting."""


@dataclass(frozen=True)
class IncidentalWords:
    """Folded words of a query that name rather than ask."""

    identifiers: frozenset[str] = frozenset()
    """Words of identifiers: never searched."""
    names: frozenset[str] = frozenset()
    """Capitalised words inside a sentence: not searched when the collection
    does not know them."""


def _is_identifier(token: str) -> bool:
    has_digit = any(ch.isdigit() for ch in token)
    has_letter = any(ch.isalpha() for ch in token)
    return has_digit and has_letter


def _is_shouted(word: str) -> bool:
    """A word in capitals longer than an acronym ("CANCLE", "REFUND"): a
    customer shouting, whose words may be typos and still ask something."""
    return len(word) > _LONGEST_ACRONYM and word.isupper()


def _starts_sentence(text: str, index: int) -> bool:
    """Whether the word at `index` opens the text, a line or a sentence
    (quotes and brackets before it skipped): its capital then says nothing."""
    i = index - 1
    while i >= 0 and (text[i].isspace() or text[i] in _OPENERS):
        if text[i] == "\n":
            return True
        i -= 1
    return i < 0 or text[i] in _SENTENCE_ENDS


def incidental_words(query: str) -> IncidentalWords:
    """The identifiers and names of a query, folded as `search_terms` folds words."""
    identifiers: set[str] = set()
    for match in _TOKEN.finditer(query):
        token = match.group(0)
        if _is_identifier(token):
            identifiers.update(fold(word) for word in WORD.findall(token))
    names: set[str] = set()
    for match in WORD.finditer(query):
        word = match.group(0)
        if not word[:1].isupper() or word == _PRONOUN_I or _is_shouted(word):
            continue
        if _starts_sentence(query, match.start()):
            continue
        names.add(fold(word))
    return IncidentalWords(identifiers=frozenset(identifiers), names=frozenset(names - identifiers))
