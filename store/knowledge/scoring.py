"""Scoring a chunk for a query: BM25 over weighted fields, normalised to 0..1.

A chunk has three fields: its text, the leaf heading of its path (the
section's own heading, which says what the section answers) and the
heading's ancestors (the article title, repeated in every chunk of the
article). A query word in the leaf heading counts `LEAF_HEADING_WEIGHT`
times a word in the text; a word of the ancestors only
`ANCESTOR_HEADING_WEIGHT`, so an article's title cannot lift all of its
chunks, the introduction ("This article covers...") first among them.

Each query term contributes `idf * sat(tf)`, with BM25's saturation
`sat(tf) = tf / (tf + k1 * (1 - b + b * length / avg_length))` (in 0..1),
and the score is the share of the query's information a chunk matches,
0..1, comparable across queries and collections: the chunk's
`SATURATION_TERMS` largest contributions over the `SATURATION_TERMS`
largest idfs of the query. A term the collection does not know still counts
in the denominator (with `UNKNOWN_TERM_WEIGHT`), so a question about
something the collection never mentions scores low.

Why only the most informative terms: a passage answers a ticket's topic,
which a handful of words carry ("refund", "returned", "weeks"); a long
ticket also says hello, tells a story and asks a second thing. Dividing by
every term's idf made a score fall with the ticket's length, so a real
customer's refund question scored 0.09 against 0.4 for the same question
asked in one line. Over the K most informative terms, a one-line question
(at most K terms) scores exactly as before, and a long one as its best
K-word question. Order numbers and names never reach the terms
(`store.knowledge.incidental`). K = 6 was chosen with the threshold on the
tuning sets (see `store.knowledge.search.DEFAULT_MIN_SCORE`): 4 and 5 let
more uncovered tickets through, 8 and more sank long covered tickets again.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from store.chunking import TITLE_SEPARATOR
from store.knowledge.terms import words

K1 = 0.9
"""BM25 term-frequency saturation (the usual 1.2)."""
B = 0.75
"""BM25 length normalisation (the usual 0.75)."""
LEAF_HEADING_WEIGHT = 2.0
"""A query word in the section's own heading counts as this many in the text."""
ANCESTOR_HEADING_WEIGHT = 0.5
"""A query word in the article title (and other enclosing headings) counts
this much: it is repeated in every chunk, so it says little about which one."""
UNKNOWN_TERM_WEIGHT = 1.0
"""Share of the idf of an unseen word kept in the denominator: a customer's
question often carries a word the articles never use ("jacket"), which
should lower the score, not sink a good match."""
CORRECTED_TERM_WEIGHT = 0.8
"""A word matched only after typo correction counts this much of a match."""
SATURATION_TERMS = 6
"""Query terms a score is measured over: the most informative ones (see the
module docstring)."""


@dataclass(frozen=True)
class ChunkTerms:
    """A chunk as ranking sees it: word counts of its three fields, and length.

    Words, not stems: counting is then a C-level `Counter` over the words,
    and a term's frequency sums the counts of the word forms the collection
    has for its stem (`QueryTerm.forms`), so only the query's stems are ever
    looked at (stemming every word of every candidate cost 0.2 ms a chunk).
    """

    text: dict[str, int]
    leaf: dict[str, int]
    ancestors: dict[str, int]
    length: int
    """Words of the text (headings excluded)."""

    def tf(self, forms: Sequence[str]) -> float:
        """Weighted frequency of a term given as its word forms."""
        return sum(
            self.text.get(form, 0)
            + LEAF_HEADING_WEIGHT * self.leaf.get(form, 0)
            + ANCESTOR_HEADING_WEIGHT * self.ancestors.get(form, 0)
            for form in forms
        )


@dataclass(frozen=True)
class QueryTerm:
    word: str
    """The word searched for (after typo correction)."""
    stem: str
    idf: float
    known: bool
    """The collection has the stem; otherwise it only lowers every score."""
    corrected_from: str | None = None
    """The word as typed, when it was a typo corrected to `word`."""
    forms: tuple[str, ...] = ()
    """The collection's words with this stem (`refund`, `refunds`, `refunded`)."""

    @property
    def denominator_weight(self) -> float:
        return self.idf * (1.0 if self.known else UNKNOWN_TERM_WEIGHT)

    @property
    def match_weight(self) -> float:
        return self.idf * (1.0 if self.corrected_from is None else CORRECTED_TERM_WEIGHT)


def heading_fields(title: str | None) -> tuple[str, str]:
    """(leaf heading, ancestor headings) of a heading path. A path of one
    heading is the article title alone (an introduction), so it is an
    ancestor: it names the article, not a section."""
    if not title:
        return "", ""
    parts = title.split(TITLE_SEPARATOR)
    if len(parts) == 1:
        return "", parts[0]
    return parts[-1], " ".join(parts[:-1])


def analyse_chunk(title: str | None, text: str) -> ChunkTerms:
    """Word counts of a chunk's fields (see the module docstring)."""
    leaf, ancestors = heading_fields(title)
    body = words(text)
    return ChunkTerms(
        text=Counter(body),
        leaf=Counter(words(leaf)),
        ancestors=Counter(words(ancestors)),
        length=len(body),
    )


def idf(document_frequency: int, chunks: int) -> float:
    """BM25 inverse document frequency (Lucene's form: always positive)."""
    return math.log(1.0 + (chunks - document_frequency + 0.5) / (document_frequency + 0.5))


def score(terms: Sequence[QueryTerm], chunk: ChunkTerms, avg_length: float) -> float:
    """The chunk's normalised score for the query terms, 0..1: its
    `SATURATION_TERMS` best contributions over the query's as many largest
    weights (each contribution is at most its term's weight, so at most 1)."""
    denominator = sum(heapq.nlargest(SATURATION_TERMS, (t.denominator_weight for t in terms)))
    if denominator <= 0.0:
        return 0.0
    norm = K1 * (1.0 - B + B * chunk.length / max(avg_length, 1.0))
    contributions = []
    for term in terms:
        tf = chunk.tf(term.forms)
        if tf:
            contributions.append(term.match_weight * tf / (tf + norm))
    total = sum(heapq.nlargest(SATURATION_TERMS, contributions))
    return min(1.0, total / denominator)
