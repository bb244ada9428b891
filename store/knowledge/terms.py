"""Words and stems: the one tokeniser ranking uses on both backends.

Query words, chunk texts and the per-collection statistics all go through
`words` and `stem`, so a score depends on the text alone, never on which
database stores it or what else that database holds. The stemmer is
Snowball's English (the algorithm of PostgreSQL's `english` configuration),
from PyStemmer.
"""

from __future__ import annotations

import re
import threading
import unicodedata

import Stemmer

WORD = re.compile(r"\w+", re.UNICODE)

_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    im ive id dont cant wont didnt doesnt isnt hi hello hey thanks thank please ok okay many
    much get got getting also still want wanted need know anymore ago yet already something
    anything stuff thing things help
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words that carry no topic: a question made only of them ("how do I do
this?") asks nothing a passage can answer, so it gets no passage."""

_local = threading.local()
_STEM_CACHE_SIZE = 200_000
_stem_cache: dict[str, str] = {}
"""word -> stem; shared by threads (a dict read or write is atomic), cleared when full."""


def fold(word: str) -> str:
    """Lower case without diacritics (`Café` -> `cafe`), as SQLite's
    `remove_diacritics` tokenizer option indexes words."""
    word = word.lower()
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """Folded words of a text, in order, duplicates kept."""
    lowered = text.lower()
    found = WORD.findall(lowered)
    if lowered.isascii():
        return found
    return [fold(w) for w in found]


def _stemmer() -> Stemmer.Stemmer:
    # A PyStemmer object is not thread-safe: one per thread.
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def stem(word: str) -> str:
    """Snowball English stem of a folded word (`subscriptions` -> `subscript`)."""
    found = _stem_cache.get(word)
    if found is None:
        if len(_stem_cache) >= _STEM_CACHE_SIZE:
            _stem_cache.clear()
        found = _stem_cache[word] = _stemmer().stemWord(word)
    return found


def is_stopword(word: str) -> bool:
    return word in STOPWORDS
