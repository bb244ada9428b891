"""Typo tolerance: a query word the collection does not know is corrected
to the nearest word it does ("cancle" -> "cancel", "subscripton" ->
"subscription", "sinse" -> "since") before full-text matching.

Correcting the query against the collection's own vocabulary (from
`store.knowledge.statistics`) works identically on SQLite and PostgreSQL,
needs no trigram index, and keeps the databases' full-text matching exact:
only the words searched for change. Distance is optimal string alignment
(Levenshtein plus adjacent transpositions), from rapidfuzz.
"""

from __future__ import annotations

from rapidfuzz import process
from rapidfuzz.distance import OSA

from store.knowledge.statistics import CollectionStatistics

MIN_TYPO_LENGTH = 4
"""Shorter words are left alone: at one edit, "tax" is also "tab", "fax", "tea"."""
LONG_WORD_LENGTH = 9
"""From this length on a word may be two edits away from its correction."""


def max_edits(length: int) -> int:
    return 2 if length >= LONG_WORD_LENGTH else 1


def correct(word: str, statistics: CollectionStatistics) -> str | None:
    """The collection's word nearest to `word`, or None when none is within
    `max_edits` (or the word is too short or a number). Ties go to the word
    more chunks hold, then to the alphabetically first."""
    if len(word) < MIN_TYPO_LENGTH or not word.isalpha():
        return None
    edits = max_edits(len(word))
    choices = statistics.vocabulary_near(len(word), edits)
    found = process.extract(word, choices, scorer=OSA.distance, score_cutoff=edits, limit=None)
    if not found:
        return None
    frequency = statistics.word_frequency
    best, _distance, _index = min(found, key=lambda f: (f[1], -frequency.get(f[0], 0), f[0]))
    return str(best)
