"""Search as a user tool: `chorus search` (through the CLI runner, on
SQLite) and `store.knowledge.lookup` on SQLite and PostgreSQL: passages with
citation ids and scores, the ranking mode, and refusals naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session

from store.knowledge.crud import ensure_collection, ingest_document
from store.knowledge.errors import UnknownCollectionError
from store.knowledge.lookup import MAX_QUERY_CHARS, InvalidQueryError, search_collection
from store.knowledge.search import DEFAULT_MIN_SCORE
from tests.cli_runner import database_env, invoke
from tests.retrieval.conftest import HELP_CENTER, ingest_help_center


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = database_env(f"sqlite:///{tmp_path / 'db' / 'chorus.db'}", tmp_path / "state")
    ingested = invoke(["ingest", "kb", str(HELP_CENTER), "--json"], env)
    assert ingested.exit_code == 0, ingested.output
    return env


def test_search_prints_json_with_citations_and_scores(cli_env: dict[str, str]) -> None:
    result = invoke(["search", "kb", "how long do refunds take", "--k", "3", "--json"], cli_env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["collection"], data["top_k"], data["ranking"]) == ("kb", 3, "fts")
    passages = data["passages"]
    assert 1 <= len(passages) <= 3 and passages[0]["document"] == "refunds.md"
    for passage in passages:
        assert passage["id"] == f"{passage['document']}#{passage['position']}"
    scores = [p["score"] for p in passages]
    assert scores == sorted(scores, reverse=True)


def test_search_prints_a_table_and_escapes_markup(cli_env: dict[str, str], tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    markup = "# [bold]Brackets[/bold]\n\nZanzibar [red]kites[/] fly."
    (odd / "markup.md").write_text(markup, "utf-8")
    added = invoke(["ingest", "kb2", str(odd)], cli_env)
    assert added.exit_code == 0, added.output
    table = invoke(["search", "kb2", "zanzibar kites [/]"], cli_env)
    assert table.exit_code == 0, table.output
    out = table.stdout
    assert "markup.md#0" in out and "[bold]Brackets[/bold]" in out and "[red]kites[/]" in out
    assert f"zanzibar kites [/] (fts, min score {DEFAULT_MIN_SCORE:g})" in out

    json_default = json.loads(invoke(["search", "kb", "refund", "--json"], cli_env).stdout)
    assert json_default["top_k"] == 5 and len(json_default["passages"]) == 5
    assert json_default["min_score"] == DEFAULT_MIN_SCORE


def test_search_says_when_nothing_is_relevant(cli_env: dict[str, str]) -> None:
    """The retrieve step's default minimum score applies; --min-score 0 shows
    what fell below it."""
    question = "how long do refunds take"
    everything = invoke(["search", "kb", question, "--min-score", "0", "--json"], cli_env)
    every = json.loads(everything.stdout)
    assert every["min_score"] == 0 and len(every["passages"]) == 5
    # A threshold keeps exactly the passages at or over it, in order.
    threshold = (every["passages"][0]["score"] + every["passages"][-1]["score"]) / 2
    args = ["search", "kb", question, "--min-score", str(threshold), "--json"]
    kept = json.loads(invoke(args, cli_env).stdout)
    over = [p for p in every["passages"] if p["score"] >= threshold]
    assert 0 < len(over) < 5 and kept["passages"] == over
    stopwords = invoke(["search", "kb", "how do I do this?"], cli_env)
    assert stopwords.exit_code == 0, stopwords.output
    assert "nothing relevant in kb for 'how do I do this?'" in stopwords.stdout
    assert "--min-score 0" in stopwords.stdout
    as_json = json.loads(invoke(["search", "kb", "how do I do this?", "--json"], cli_env).stdout)
    assert (as_json["nothing_relevant"], as_json["passages"]) == (True, [])


def test_search_refusals_name_what_is_wrong(cli_env: dict[str, str]) -> None:
    cases = [
        (["search", "kb", ""], "the query is empty"),
        (["search", "kb", "   "], "the query is empty"),
        (["search", "kb", "?!"], "has no word to search for"),
        (["search", "kb", "x" * (MAX_QUERY_CHARS + 1)], f"the limit is {MAX_QUERY_CHARS:,}"),
        (["search", "kb", "refund\x00"], "NUL"),
        (["search", "kb", "caf\udce9"], "lone surrogate"),
        (["search", "kb", "refund", "--k", "0"], "k must be between 1 and 50, got 0"),
        (["search", "kb", "refund", "--k", "51"], "k must be between 1 and 50, got 51"),
        (["search", "kb", "refund", "--min-score", "1.5"], "min_score must be between 0 and 1"),
        (["search", "kb", "refund", "--min-score", "nan"], "min_score must be between 0 and 1"),
        (["search", "nope", "refund"], "unknown knowledge collection 'nope' (collections: kb)"),
        (["search", "bad name", "refund"], "unknown knowledge collection 'bad name'"),
    ]
    for args, message in cases:
        result = invoke(args, cli_env)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    not_a_number = invoke(["search", "kb", "refund", "--k", "many"], cli_env)
    assert not_a_number.exit_code == 2 and "--k" in not_a_number.stderr


def test_lookup_on_both_backends(session: Session) -> None:
    ingest_help_center(session, collection="look")
    results = search_collection(session, collection="look", query="cancel my subscription")
    assert (results.top_k, results.ranking, results.collection_ranking) == (5, "fts", "fts")
    assert results.passages[0].document == "subscriptions.md"
    ensure_collection(session, name="look", embedding_alias="embed")
    hybrid = search_collection(session, collection="look", query="refund", top_k=2)
    assert (hybrid.ranking, hybrid.collection_ranking, len(hybrid.passages)) == ("fts", "hybrid", 2)
    with pytest.raises(UnknownCollectionError):
        search_collection(session, collection="nope", query="refund")
    cases = [("", 5, 0.1, "q"), ("a\x00", 5, 0.1, "q"), ("refund", 51, 0.1, "k")]
    cases.append(("refund", 5, -0.1, "min_score"))
    for query, top_k, min_score, field in cases:
        with pytest.raises(InvalidQueryError) as refused:
            search_collection(
                session, collection="look", query=query, top_k=top_k, min_score=min_score
            )
        assert refused.value.field == field
    nothing = search_collection(session, collection="look", query="how do I do this?")
    assert (nothing.nothing_relevant, nothing.passages) == (True, [])


def test_an_empty_collection_answers_nothing(session: Session, cli_env: dict[str, str]) -> None:
    ingest_document(session, collection="tiny", name="a.md", source="a", text="# A\n\nAlpha.")
    results = search_collection(session, collection="tiny", query="zebra crossing")
    assert results.passages == []
    empty = invoke(["search", "kb", "zebra crossing quokka"], cli_env)
    assert empty.exit_code == 0 and "nothing relevant in kb" in empty.stdout
