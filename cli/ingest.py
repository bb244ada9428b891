"""`chorus ingest`: keep a knowledge collection in step with files and folders.

A document is named by its path relative to the folder given (a single file
by its own name): `chorus ingest kb docs/` stores `docs/help/refunds.md` as
`help/refunds.md`. Re-ingesting unchanged files writes nothing; `--prune`
makes the files given the collection's whole content (see
`store.knowledge.sync` for renames and duplicates).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.chain_checks import known_aliases
from cli.console import console, fail, load_settings
from cli.database import database

if TYPE_CHECKING:
    from store.knowledge.crud import PreparedDocument

INGEST_SUFFIXES = (".md", ".markdown", ".txt")


def _ingest_files(paths: list[Path]) -> list[tuple[str, Path]]:
    """(document name, file) for each path: a file under its own name, the
    .md/.markdown/.txt files of a directory (recursively) under their path
    relative to it. Exits 1 naming the first path that cannot be ingested."""
    found: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            files = sorted(
                f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in INGEST_SUFFIXES
            )
            if not files:
                fail(f"{path} has no {', '.join(INGEST_SUFFIXES)} files to ingest")
            found.extend((f.relative_to(path).as_posix(), f) for f in files)
        elif path.is_file():
            if path.suffix.lower() not in INGEST_SUFFIXES:
                fail(f"{path}: only {', '.join(INGEST_SUFFIXES)} files can be ingested")
            found.append((path.name, path))
        else:
            fail(f"{path} does not exist")
    names = [name for name, _ in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        fail(f"several files would be ingested as {', '.join(duplicates)}: ingest them separately")
    return found


def _read(files: list[tuple[str, Path]]) -> list[PreparedDocument]:
    """The files as prepared documents (BOM-safe UTF-8); exits 1 naming the
    first file that cannot be read, decoded or stored."""
    from store.knowledge.crud import prepare_document
    from store.knowledge.decoding import decode_document
    from store.knowledge.errors import KnowledgeError

    prepared: list[PreparedDocument] = []
    for name, path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror or exc}")
        try:
            text = decode_document(data, name=str(path))
            prepared.append(prepare_document(name=name, source=str(path), text=text))
        except KnowledgeError as exc:
            fail(f"nothing was ingested: {path}: {exc}")
    return prepared


def ingest(
    collection: Annotated[str, typer.Argument(help="knowledge collection (created if missing)")],
    paths: Annotated[list[Path], typer.Argument(help="files, or directories of .md/.txt files")],
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="the files given are the collection's whole content: remove documents "
            "that are gone, rename moved ones in place",
        ),
    ] = False,
    embedding_alias: Annotated[
        str | None,
        typer.Option(help="model alias whose embeddings rank the collection (hybrid ranking)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> None:
    """Ingest documents into a knowledge collection, all or nothing: new
    names are added, changed ones updated, unchanged ones left alone; with
    --prune, documents gone from the files given are removed. Embeddings are
    computed by the worker on first retrieval."""
    settings = load_settings()
    if embedding_alias is not None and embedding_alias not in known_aliases(settings):
        fail(f"unknown model alias {embedding_alias!r} (see {settings.models_file})")
    documents = _read(_ingest_files(paths))
    from store.engine import session_scope
    from store.knowledge.errors import DuplicateDocumentError, KnowledgeError
    from store.knowledge.sync import STATUSES, sync_documents

    with database(settings) as engine:
        try:
            with session_scope(engine) as session:
                report = sync_documents(
                    session,
                    collection=collection,
                    documents=documents,
                    prune=prune,
                    embedding_alias=embedding_alias,
                )
        except DuplicateDocumentError as exc:
            hint = "" if prune else " (--prune does that)"
            fail(f"nothing was ingested: {exc}{hint}")
        except KnowledgeError as exc:
            fail(f"nothing was ingested: {exc}")
    rows = [
        {
            "document": d.name,
            "chunks": d.chunks,
            "status": d.status,
            "renamed_from": d.renamed_from,
        }
        for d in report.documents
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"knowledge collection {escape(collection)}", title_justify="left")
    for column in ("document", "chunks", "status"):
        table.add_column(column)
    for row in rows:
        status = row["status"]
        if row["renamed_from"]:
            status = f"renamed from {row['renamed_from']}"
        table.add_row(Text(str(row["document"])), str(row["chunks"]), Text(str(status)))
    console.print(table)
    counts = report.counts()
    console.print(
        f"{len(rows)} documents: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES),
        highlight=False,
        markup=False,
    )
