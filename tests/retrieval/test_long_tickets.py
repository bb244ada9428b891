"""Long customer tickets on SQLite and PostgreSQL: a score measures how well
a passage answers the ticket's topic, not the ticket's length or the order
numbers and names in it, so a covered ticket keeps its answer at the
default minimum score and an uncovered one mostly gets nothing.

tests/retrieval/long_tickets.yaml is a tuning set (DEFAULT_MIN_SCORE and
SATURATION_TERMS were chosen on it); the floors below are what was
measured when they were chosen."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from store.knowledge.evaluation import Question, load_questions
from store.knowledge.incidental import incidental_words
from store.knowledge.search import DEFAULT_MIN_SCORE, query_terms, search, search_terms
from store.knowledge.statistics import CACHE
from tests.retrieval.conftest import COLLECTION, ingest_help_center

LONG_TICKETS = Path(__file__).with_name("long_tickets.yaml")
REFUND_TICKET = (
    "I returned the Ridgeline hiking boots two weeks ago and still have no refund. "
    "Order NW-1003. Can you check where it is?"
)


def tickets() -> list[Question]:
    return load_questions(LONG_TICKETS, "tickets")


def test_identifiers_and_names_are_read_from_the_query_as_typed() -> None:
    found = incidental_words(
        'Hello from Melbourne! My "Cirrus" jacket (order NW-9034, code SPRING20) came at '
        "2:14pm.\nThanks, Maria. I paid $75 for 2 of them in Reno."
    )
    assert found.identifiers == {"nw", "9034", "spring20", "2", "14pm"}
    # Capitals opening a sentence or a line ("Hello", "Thanks", "I") are not names.
    assert found.names == {"melbourne", "cirrus", "maria", "reno"}
    assert incidental_words("where is my refund") == incidental_words("")
    # Shouting is not naming: its words may be typos to correct ("CANCLE").
    shouted = incidental_words("PLEASE CANCLE MY SUBSCRIPTON, thanks BC").names
    assert "bc" in shouted and not {"please", "cancle", "subscripton"} & shouted


def test_unknown_names_and_numbers_are_not_searched_but_known_ones_are(
    session: Session,
) -> None:
    ingest_help_center(session)
    statistics = CACHE.get(session, collection=COLLECTION)
    query = "Hi, my Ridgeline boots from Reno, order NW-1003, took 30 days and 4417 hours"
    terms = query_terms(search_terms(query), statistics, incidental=incidental_words(query))
    known = {t.word: t.known for t in terms}
    # "Reno" and "30" are in the articles; "Ridgeline", "nw", "1003" and "4417" are not
    # (or are part of an order number), and a name is never typo-corrected. An
    # ordinary word the articles lack ("boots") still counts, as unknown.
    assert known["reno"] and known["30"] and not known["boots"]
    assert not {"ridgeline", "nw", "1003", "4417"} & set(known)
    corrected = {t.corrected_from for t in terms}
    assert not {"ridgeline", "nw", "1003", "4417"} & corrected, corrected


def test_a_greeting_a_name_and_an_order_number_do_not_change_the_score(
    session: Session,
) -> None:
    ingest_help_center(session)
    plain = "I returned the boots of my order two weeks ago and still have no refund"
    dressed = (
        "Hi, I returned the Ridgeline boots of my order NW-1003 two weeks ago and still "
        "have no refund.\nThanks, Maria Okafor"
    )
    [short] = search(session, collection=COLLECTION, query=plain, top_k=1)
    [long] = search(session, collection=COLLECTION, query=dressed, top_k=1)
    assert (long.id, long.score) == (short.id, short.score)
    assert long.document in {"refunds.md", "returns.md"}


def test_the_example_refund_ticket_is_answered_at_the_default(session: Session) -> None:
    """The ticket the flagship answered "let me check" to before scores were
    measured over the most informative terms (refunds.md#3 scored 0.09)."""
    ingest_help_center(session)
    passages = search(
        session, collection=COLLECTION, query=REFUND_TICKET, top_k=3, min_score=DEFAULT_MIN_SCORE
    )
    assert passages, "nothing relevant for a refund ticket the Help Center covers"
    assert passages[0].document in {"refunds.md", "returns.md"}, [p.id for p in passages]


def test_long_tickets_keep_their_answers_and_uncovered_ones_mostly_get_nothing(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prints the distributions DEFAULT_MIN_SCORE was chosen on (with
    test_ranking's in-sample and off-topic ones). Measured at 0.14: hit@3
    30/30, 29/30 covered tickets keep their answer, 10/16 uncovered tickets
    get nothing."""
    ingest_help_center(session)
    answers: list[float] = []
    tops: list[float] = []
    hit3 = 0
    for ticket in tickets():
        passages = search(session, collection=COLLECTION, query=ticket.query, top_k=3)
        if ticket.covered:
            answer = next((p.score for p in passages if p.document in ticket.documents), 0.0)
            hit3 += answer > 0.0
            answers.append(answer)
        else:
            tops.append(passages[0].score if passages else 0.0)
    kept = sum(a >= DEFAULT_MIN_SCORE for a in answers)
    refused = sum(t < DEFAULT_MIN_SCORE for t in tops)
    with capsys.disabled():
        backend = session.get_bind().dialect.name
        print(
            f"\n{backend}: long covered tickets: answer scores min {min(answers):.3f}, "
            f"median {sorted(answers)[len(answers) // 2]:.3f}, {kept}/{len(answers)} at or "
            f"over {DEFAULT_MIN_SCORE}; uncovered tickets: top scores max {max(tops):.3f}, "
            f"median {sorted(tops)[len(tops) // 2]:.3f}, {refused}/{len(tops)} answered nothing"
        )
    assert len(answers) >= 25 and len(tops) >= 15
    assert hit3 == len(answers), sorted(answers)
    assert kept >= len(answers) - 1, sorted(answers)
    assert refused >= 10, sorted(tops)
