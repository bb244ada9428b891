"""Per-model quality profiles: simulated models that are right or wrong at a
configured rate, so an offline comparison of chains shows a real trade-off.

Without a profile the simulator answers as it always has (a marked echo of
the question, a minimal JSON instance). A model with a `quality` profile
answers unscripted calls like a model that reads its prompt:

- **Structured output**: an enum field is chosen from the words of the
  question (a keyword table maps each value to words that point to it, e.g.
  `refund: [money back, refunded]`; `simple`/`complex` goes by the question's
  length), then replaced by another value at `misclassify_rate`. A field
  named like `confidence` is high when nothing went wrong and lower, but
  overlapping, when something did: calibration as imperfect as a real model's.
- **Grounded answers**: when the prompt holds passages marked
  `[document#n]`, the answer is extractive: the top passage whole, then the
  `max_extra_sentences` sentences of the other passages that share the most
  words with the question, each cited; every sentence is dropped at
  `omit_rate` (`hard_omit_rate` on long questions), which is how a required
  fact goes missing. When no sentence shares `min_overlap` words with the
  question, a good model says it could not find the answer; at
  `unsupported_answer_rate` it answers from the passages anyway.

What the simulated models "know" is only this reading, so it is no measure of
real models: the keyword table in simulator/quality_models.yaml was written
for the Larkspur tickets of evals/support_tickets.yaml, and a word-overlap
extract misses facts a real model would find (both models alike). The rates
are what differ between models, and they are assumptions.
- **Rewrites**: a prompt with an `Answer:` line (the brand-voice writer) gets
  that answer back, greeted, its sentences dropped at `omit_rate`.
- **Anything else** (an ungrounded question) gets a polite answer that
  carries no facts, as a model that does not know the store's policies would.

Every draw comes from a generator seeded by the profile's seed, the model,
the prompt and what is drawn, so the same call always gets the same answer
(a retried call too), and two models differ only by their profiles.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simulator.schema_instance import minimal_instance

__all__ = ["QualityProfile", "quality_reply", "quality_structured_reply"]

UNSUPPORTED_ANSWER = (
    "I couldn't find an answer to this in our Help Center, so I've passed your question "
    "to our support team, who will follow up with you."
)
"""What a model that reads its sources says when they do not answer."""
UNGROUNDED_ANSWER = (
    "Thanks for reaching out! I'm happy to help with this. Our support team can confirm "
    "the details for your order."
)
"""An answer without sources: polite, and carrying no store facts."""


class QualityProfile(BaseModel):
    """How often one simulated model goes wrong, and how it reads a prompt."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    misclassify_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Each enum field of a structured reply takes a wrong value at this rate."""
    hard_misclassify_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    """The rate on hard questions (default: `misclassify_rate`)."""
    omit_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Each sentence of an answer is dropped at this rate."""
    hard_omit_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    """The rate on hard questions (default: `omit_rate`)."""
    unsupported_answer_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """When the sources do not answer, the model answers from them anyway at this rate."""
    hard_min_words: int = Field(default=30, ge=1)
    """A question of at least this many words is hard (and `complex`)."""
    min_overlap: int = Field(default=2, ge=1)
    """Distinct question words a passage must share to count as answering it."""
    max_extra_sentences: int = Field(default=4, ge=0, le=50)
    """Sentences a grounded answer takes from passages other than the top one."""
    confidence_when_right: tuple[float, float] = (0.6, 0.97)
    confidence_when_wrong: tuple[float, float] = (0.4, 0.85)
    keywords: dict[str, list[str]] = Field(default_factory=dict)
    """Enum value -> words or phrases (matched as word prefixes, case-insensitive)
    in a question that point to it; a value without an entry is its own word."""


_PASSAGE = re.compile(r"^\[([A-Za-z0-9_.\-/ ]+#\d+)\][ \t]*", re.MULTILINE)
_QUESTION_LINE = re.compile(r"^[ \t]*(question|ticket|customer message)\b[^\n]*:", re.I | re.M)
_ANSWER_LINE = re.compile(r"^[ \t]*answer:[ \t]*", re.IGNORECASE | re.MULTILINE)
_CUSTOMER_LINE = re.compile(r"^[ \t]*customer:[ \t]*(.+)$", re.IGNORECASE | re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?\]])\s+(?=[A-Z0-9\"'(*])|\n+")
_NOT_A_SENTENCE = re.compile(r"\d{1,2}[.)]|\|[\s|:-]*\||[A-Za-z]+:|[^A-Za-z0-9]*")
"""List numbers (`1.`), table rules (`| --- |`), lead-ins (`Please:`), punctuation."""
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CONFIDENCE = re.compile(r"confidence|certainty|probability", re.IGNORECASE)
_STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "you",
        "your",
        "yours",
        "our",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "can",
        "could",
        "would",
        "should",
        "will",
        "did",
        "does",
        "doing",
        "not",
        "but",
        "with",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "them",
        "they",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "how",
        "about",
        "from",
        "into",
        "onto",
        "just",
        "also",
        "any",
        "some",
        "all",
        "get",
        "got",
        "its",
        "it's",
        "i'm",
        "i've",
        "i'd",
        "don't",
        "didn't",
        "can't",
        "isn't",
        "won't",
        "please",
        "thanks",
        "thank",
        "hello",
        "hey",
        "dear",
        "regards",
        "one",
        "two",
        "more",
        "most",
        "very",
        "much",
        "than",
        "then",
        "too",
        "out",
        "off",
        "over",
        "under",
        "been",
        "being",
        "here",
        "still",
        "let",
        "know",
        "need",
        "want",
        "like",
        "make",
        "made",
        "way",
        "back",
        "use",
        "used",
        "my",
        "me",
        "we",
        "us",
        "a",
        "an",
        "to",
        "of",
        "in",
        "on",
        "at",
        "by",
        "or",
        "if",
        "is",
        "be",
        "do",
        "so",
        "no",
        "as",
        "up",
    ]
)


@dataclass
class _Prompt:
    """A prompt as the profile reads it: passages, the question, an answer to rewrite."""

    passages: list[tuple[str, str]]
    question: str
    answer_to_rewrite: str | None
    customer: str | None


def _read(text: str) -> _Prompt:
    markers = list(_PASSAGE.finditer(text))
    passages: list[tuple[str, str]] = []
    question = text
    if markers:
        tail_start = markers[-1].end()
        asked = _QUESTION_LINE.search(text, tail_start)
        end_of_passages = asked.start() if asked else len(text)
        for i, marker in enumerate(markers):
            end = markers[i + 1].start() if i + 1 < len(markers) else end_of_passages
            passages.append((marker.group(1), text[marker.end() : end].strip()))
        question = text[end_of_passages:]
    else:
        lines = list(_QUESTION_LINE.finditer(text))
        if lines:
            question = text[lines[-1].start() :]
    rewrite = _ANSWER_LINE.search(text)
    customer = _CUSTOMER_LINE.search(text)
    return _Prompt(
        passages=passages,
        question=question,
        answer_to_rewrite=text[rewrite.end() :].strip() if rewrite and not markers else None,
        customer=customer.group(1).strip() if customer else None,
    )


def _rng(profile: QualityProfile, model: str, prompt: str, what: str) -> random.Random:
    digest = hashlib.sha256(f"{profile.seed}\n{model}\n{what}\n{prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _stems(text: str) -> set[str]:
    return {w[:5] for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _STOPWORDS}


def _is_hard(profile: QualityProfile, question: str) -> bool:
    return len(_WORD.findall(question.lower())) >= profile.hard_min_words


def _sentences(passage: str) -> list[str]:
    """The sentences (and list items, table rows) of a passage, without
    markdown decoration, headings, table rules or bare list numbers."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(passage):
        piece = piece.replace("**", "").strip().lstrip("-*• ").strip()
        if not piece or piece.startswith("#") or _NOT_A_SENTENCE.fullmatch(piece):
            continue
        out.append(piece)
    return out


@dataclass
class _Answer:
    text: str
    went_wrong: bool


def _grounded(profile: QualityProfile, model: str, prompt: str, read: _Prompt) -> _Answer:
    """The top passage whole (retrieval ranked it first as a whole), then the
    sentences of the other passages that share the most words with the
    question, each cited."""
    asked = _stems(read.question)
    hard = _is_hard(profile, read.question)
    chosen: list[tuple[str, str]] = []  # (sentence, citation id)
    others: list[tuple[float, int, str, str]] = []  # (score, order, sentence, citation id)
    best_overlap = 0
    for rank, (pid, passage) in enumerate(read.passages):
        for sentence in _sentences(passage):
            overlap = len(asked & _stems(sentence))
            best_overlap = max(best_overlap, overlap)
            if rank == 0:
                chosen.append((sentence, pid))
            elif overlap:
                # A better-ranked passage wins ties: retrieval knows more than word counts.
                others.append((overlap + 0.5 / rank, len(others), sentence, pid))
    extra = sorted(others, key=lambda c: (-c[0], c[1]))[: profile.max_extra_sentences]
    chosen += [(sentence, pid) for _, _, sentence, pid in sorted(extra, key=lambda c: c[1])]
    supported = best_overlap >= profile.min_overlap
    if not supported:
        rng = _rng(profile, model, prompt, "unsupported")
        if not chosen or rng.random() >= profile.unsupported_answer_rate:
            return _Answer(UNSUPPORTED_ANSWER, went_wrong=False)
        # Answering from sources that do not answer: confident and wrong.
    rate = profile.hard_omit_rate if hard and profile.hard_omit_rate is not None else None
    kept = _kept(profile, model, prompt, len(chosen), rate)
    parts = [f"{chosen[i][0]} [{chosen[i][1]}]" for i in kept]
    if not parts:
        return _Answer(UNSUPPORTED_ANSWER, went_wrong=True)
    return _Answer(" ".join(parts), went_wrong=len(kept) < len(chosen) or not supported)


def _kept(
    profile: QualityProfile, model: str, prompt: str, count: int, rate: float | None = None
) -> list[int]:
    """Indices of the sentences kept after dropping each at the omit rate."""
    rate = profile.omit_rate if rate is None else rate
    rng = _rng(profile, model, prompt, "omit")
    return [i for i in range(count) if rng.random() >= rate]


def _text_answer(profile: QualityProfile, model: str, prompt: str) -> _Answer:
    read = _read(prompt)
    if read.passages:
        return _grounded(profile, model, prompt, read)
    if read.answer_to_rewrite is not None:
        # A sentence keeps its citation: `[doc#n]` after the full stop stays with it.
        sentences = _sentences(read.answer_to_rewrite) or [read.answer_to_rewrite]
        kept = _kept(profile, model, prompt, len(sentences))
        greeting = f"Hi {read.customer}," if read.customer else "Hi there,"
        body = " ".join(sentences[i] for i in kept) if kept else UNGROUNDED_ANSWER
        return _Answer(f"{greeting}\n\n{body}", went_wrong=len(kept) < len(sentences))
    return _Answer(UNGROUNDED_ANSWER, went_wrong=False)


def quality_reply(profile: QualityProfile, model: str, prompt: str) -> str:
    """The unscripted text reply of a model with this profile."""
    return _text_answer(profile, model, prompt).text


def _choose(profile: QualityProfile, values: Sequence[Any], question: str, hard: bool) -> Any:
    strings = [v for v in values if isinstance(v, str)]
    if {"simple", "complex"} <= set(strings):
        return "complex" if hard else "simple"
    text = question.lower()
    best, best_score = None, 0
    for value in strings:
        # The value itself is evidence unless the table says which words are.
        words = profile.keywords.get(value) or [value]
        score = sum(len(re.findall(r"\b" + re.escape(w.lower()), text)) for w in words)
        if score > best_score:
            best, best_score = value, score
    if best is not None:
        return best
    for fallback in ("other", "normal", "medium"):
        if fallback in strings:
            return fallback
    return values[0]


def quality_structured_reply(
    profile: QualityProfile, model: str, prompt: str, schema: dict[str, Any]
) -> Any:
    """The unscripted structured reply of a model with this profile: a
    minimal instance of `schema` whose enum, confidence and answer fields are
    filled as described in the module docstring."""
    instance = minimal_instance(schema)
    properties = schema.get("properties")
    if not isinstance(instance, dict) or not isinstance(properties, dict):
        return instance
    read = _read(prompt)
    question = read.question
    hard = _is_hard(profile, question)
    rate = (
        profile.hard_misclassify_rate
        if hard and profile.hard_misclassify_rate is not None
        else profile.misclassify_rate
    )
    went_wrong = False
    for name, sub in properties.items():
        if not isinstance(sub, dict):
            continue
        values = sub.get("enum")
        if isinstance(values, list) and values:
            # A line naming (nearly) every option is the instruction, not evidence.
            listing = max(3, len(values) - 2)
            evidence = "\n".join(
                line
                for line in question.splitlines()
                if sum(1 for v in values if isinstance(v, str) and v in line.lower()) < listing
            )
            right = _choose(profile, values, evidence, hard)
            rng = _rng(profile, model, prompt, f"enum:{name}")
            others = [v for v in values if v != right]
            if others and rng.random() < rate:
                instance[name] = rng.choice(others)
                went_wrong = True
            else:
                instance[name] = right
        elif sub.get("type") == "string" and name in ("answer", "reply", "text", "response"):
            answer = _text_answer(profile, model, prompt)
            instance[name] = answer.text
            went_wrong = went_wrong or answer.went_wrong
    for name, sub in properties.items():
        numeric = isinstance(sub, dict) and sub.get("type") in ("number", "integer")
        if numeric and _CONFIDENCE.search(name):
            wrong, right = profile.confidence_when_wrong, profile.confidence_when_right
            low, high = wrong if went_wrong else right
            value = _rng(profile, model, prompt, f"confidence:{name}").uniform(low, high)
            bottom, top = sub.get("minimum", 0.0), sub.get("maximum", 1.0)
            instance[name] = round(min(max(value, bottom), top), 2)
    return instance
