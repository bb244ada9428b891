"""`chorus ingest`: files and directories into a collection, all or nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from store.engine import make_engine, session_scope
from store.knowledge.crud import get_collection, list_chunks, list_documents
from store.knowledge.search import search
from tests.cli_runner import database_env, invoke
from tests.retrieval.conftest import HELP_CENTER, ROOT


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'chorus.db'}"


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return database_env(database_url, tmp_path / "state")


def statuses(result: Any) -> dict[str, tuple[int, str]]:
    assert result.exit_code == 0, result.output
    return {row["document"]: (row["chunks"], row["status"]) for row in json.loads(result.stdout)}


def test_ingest_a_directory_then_again_then_a_change(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(HELP_CENTER, docs / "help")
    (docs / "notes.txt").write_text("Store hours: 9 to 5.\n\nClosed on holidays.", "utf-8")
    (docs / "ignored.pdf").write_bytes(b"%PDF")

    first = statuses(invoke(["ingest", "kb", str(docs), "--json"], cli_env))
    assert len(first) == 15 and "ignored.pdf" not in first
    assert first["help/refunds.md"] == (6, "added") and first["notes.txt"] == (1, "added")

    again = statuses(invoke(["ingest", "kb", str(docs), "--json"], cli_env))
    assert {status for _, status in again.values()} == {"unchanged"}

    refunds = docs / "help" / "refunds.md"
    refunds.write_text("# Refunds\n\nRefunds take 2 days.", "utf-8")
    table = invoke(["ingest", "kb", str(docs)], cli_env)
    assert table.exit_code == 0, table.output
    assert "help/refunds.md" in table.stdout and "updated" in table.stdout
    summary = "15 documents: 0 added, 1 updated, 14 unchanged, 0 renamed, 0 removed"
    assert summary in table.stdout

    # The same content under a second name is refused, naming both.
    copy = invoke(["ingest", "kb", str(refunds)], cli_env)
    assert copy.exit_code == 1 and "refunds.md = help/refunds.md" in copy.stderr
    single_file = tmp_path / "refunds.md"
    single_file.write_text("# Refunds\n\nStore credit is instant.", "utf-8")
    single = statuses(invoke(["ingest", "kb", str(single_file), "--json"], cli_env))
    assert single == {"refunds.md": (1, "added")}  # a single file goes in under its own name

    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            names = {d.name for d in list_documents(session, collection="kb")}
            assert len(names) == 16 and {"notes.txt", "refunds.md", "help/refunds.md"} <= names
            [top] = search(session, collection="kb", query="store opening hours", top_k=1)
            assert top.id == "notes.txt#0" and top.source == str(docs / "notes.txt")
            assert list_chunks(session, collection="kb", document="refunds.md")[0].text == (
                "Store credit is instant."
            )
            assert get_collection(session, name="kb").embedding_alias is None  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_embedding_alias_is_checked_and_stored(cli_env: dict[str, str], database_url: str) -> None:
    refunds = str(HELP_CENTER / "refunds.md")
    unknown = invoke(["ingest", "kb", refunds, "--embedding-alias", "gpt-9"], cli_env)
    assert unknown.exit_code == 1 and "unknown model alias 'gpt-9'" in unknown.stderr
    done = invoke(["ingest", "kb", refunds, "--embedding-alias", "embed", "--json"], cli_env)
    assert statuses(done) == {"refunds.md": (6, "added")}
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            assert get_collection(session, name="kb").embedding_alias == "embed"  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_bad_inputs_ingest_nothing(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    good = HELP_CENTER / "refunds.md"
    (tmp_path / "empty.md").write_text("# Only a heading\n", "utf-8")
    (tmp_path / "bad name.md").write_text("text", "utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "nothing").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "refunds.md").write_text("other refunds", "utf-8")
    cases = [
        ([str(tmp_path / "missing.md")], "does not exist"),
        ([str(tmp_path / "nothing")], "has no .md, .markdown, .txt files"),
        ([str(tmp_path / "latin1.txt")], "latin1.txt is not UTF-8 text: byte 0xe9 at offset 3"),
        ([str(good), str(tmp_path / "empty.md")], "nothing was ingested"),
        ([str(good), str(tmp_path / "bad name.md")], "invalid document name 'bad name.md'"),
        ([str(good), str(tmp_path / "a")], "several files would be ingested as refunds.md"),
        ([str(ROOT / "pyproject.toml")], "only .md, .markdown, .txt files"),
    ]
    for paths, message in cases:
        result = invoke(["ingest", "kb", *paths], cli_env)
        assert result.exit_code == 1, (paths, result.output)
        assert message in result.stderr, (paths, result.stderr)
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            assert get_collection(session, name="kb") is None
    finally:
        engine.dispose()


def test_prune_rename_parent_folder_and_bom(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    knowledge = tmp_path / "knowledge"
    help_center = knowledge / "help_center"
    shutil.copytree(HELP_CENTER, help_center)
    (knowledge / "hours.md").write_bytes(
        b"\xef\xbb\xbf# Store hours\n\n## Weekdays\n\nOpen 9 to 5, Monday to Friday.\n"
    )
    first = statuses(invoke(["ingest", "kb", str(help_center), "--json"], cli_env))
    assert len(first) == 14 and set(s for _, s in first.values()) == {"added"}

    # The parent folder names the same files help_center/...: refused without
    # --prune (they would be stored twice), renamed in place with it.
    parent = invoke(["ingest", "kb", str(knowledge)], cli_env)
    assert parent.exit_code == 1, parent.output
    refused = " ".join(parent.stderr.split())
    assert "14 document(s) have the same content" in refused
    assert "help_center/account_password.md = account_password.md" in refused
    assert "and 9 more" in refused and "(--prune does that)" in refused
    moved = invoke(["ingest", "kb", str(knowledge), "--prune", "--json"], cli_env)
    rows = {row["document"]: row for row in json.loads(moved.stdout)}
    assert rows["help_center/refunds.md"]["renamed_from"] == "refunds.md"
    assert rows["hours.md"]["status"] == "added"
    assert sum(row["status"] == "renamed" for row in rows.values()) == 14

    # A renamed file and a deleted one, with --prune.
    (help_center / "refunds.md").rename(help_center / "money-back.md")
    (help_center / "warranty.md").unlink()
    table = invoke(["ingest", "kb", str(knowledge), "--prune"], cli_env)
    assert table.exit_code == 0, table.output
    assert "15 documents: 0 added, 0 updated, 13 unchanged, 1 renamed, 1 removed" in table.stdout

    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            names = {d.name for d in list_documents(session, collection="kb")}
            assert len(names) == 14 and "help_center/money-back.md" in names
            assert not names & {"refunds.md", "help_center/refunds.md", "help_center/warranty.md"}
            [hours] = [d for d in list_documents(session, collection="kb") if d.name == "hours.md"]
            assert hours.title == "Store hours"  # the BOM did not hide the heading
    finally:
        engine.dispose()
