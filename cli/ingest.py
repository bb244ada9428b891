"""`chorus ingest`: add documents to a knowledge collection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.chain_checks import known_aliases
from cli.console import console, fail, load_settings
from cli.database import database

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


def ingest(
    collection: Annotated[str, typer.Argument(help="knowledge collection (created if missing)")],
    paths: Annotated[list[Path], typer.Argument(help="files, or directories of .md/.txt files")],
    embedding_alias: Annotated[
        str | None,
        typer.Option(help="model alias whose embeddings rank the collection (hybrid ranking)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> None:
    """Ingest documents into a knowledge collection: new names are added,
    changed ones replaced, unchanged ones left alone (all or nothing).
    Embeddings are computed by the worker on first retrieval."""
    settings = load_settings()
    if embedding_alias is not None and embedding_alias not in known_aliases(settings):
        fail(f"unknown model alias {embedding_alias!r} (see {settings.models_file})")
    files = _ingest_files(paths)
    texts: list[tuple[str, Path, str]] = []
    for name, path in files:
        try:
            texts.append((name, path, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {path}: {exc}")
    from store.engine import session_scope
    from store.knowledge.crud import ensure_collection, ingest_document
    from store.knowledge.errors import KnowledgeError

    results = []
    with database(settings) as engine:
        try:
            with session_scope(engine) as session:
                ensure_collection(session, name=collection, embedding_alias=embedding_alias)
                for name, path, text in texts:
                    try:
                        result = ingest_document(
                            session, collection=collection, name=name, source=str(path), text=text
                        )
                    except KnowledgeError as exc:
                        raise KnowledgeError(f"{path}: {exc}") from exc
                    results.append(result)
        except KnowledgeError as exc:
            fail(f"nothing was ingested: {exc}")
    rows = [
        {
            "document": r.document.name,
            "chunks": r.chunks,
            "status": "unchanged" if r.unchanged else "replaced" if r.replaced else "new",
        }
        for r in results
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"knowledge collection {escape(collection)}", title_justify="left")
    for column in ("document", "chunks", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(Text(row["document"]), str(row["chunks"]), row["status"])
    console.print(table)
    counts = {
        s: sum(1 for row in rows if row["status"] == s) for s in ("new", "replaced", "unchanged")
    }
    console.print(
        f"{len(rows)} documents: {counts['new']} new, {counts['replaced']} replaced, "
        f"{counts['unchanged']} unchanged",
        highlight=False,
    )
