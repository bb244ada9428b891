"""`chorus search`: the passages a chain's retrieve step would be given.

`chorus search help_center "how long do refunds take" --k 3` prints a table
(citation id, score, heading, text); `--json` prints the whole answer, e.g.
for `jq '.passages[].id'`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.console import console, fail, load_settings
from cli.database import database

PREVIEW_CHARS = 160
"""Characters of a passage's text the table shows (--json has all of it)."""


def search(
    collection: Annotated[str, typer.Argument(help="knowledge collection")],
    query: Annotated[str, typer.Argument(help="the question, as a customer would ask it")],
    k: Annotated[int, typer.Option("--k", help="passages to return (1-50)")] = 5,
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score",
            help="drop passages scoring below this (0..1); default: the retrieve step's; "
            "0 shows every passage",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer as JSON")] = False,
) -> None:
    """Search a knowledge collection: the best passages with their citation
    ids and scores, ranked by full text (what a chain's retrieve step sees;
    a collection with an embedding alias is ranked hybrid in a chain)."""
    settings = load_settings()
    from store.engine import session_scope
    from store.knowledge.errors import KnowledgeError
    from store.knowledge.lookup import search_collection
    from store.knowledge.search import DEFAULT_MIN_SCORE

    threshold = DEFAULT_MIN_SCORE if min_score is None else min_score
    with database(settings) as engine:
        try:
            with session_scope(engine) as session:
                results = search_collection(
                    session, collection=collection, query=query, top_k=k, min_score=threshold
                )
        except KnowledgeError as exc:
            fail(str(exc))
    if as_json:
        print(results.model_dump_json())
        return
    ranking = f"{results.ranking}, min score {results.min_score:g}"
    if results.collection_ranking != results.ranking:
        ranking += f"; chains rank this collection {results.collection_ranking}"
    table = Table(
        title=f"{escape(collection)}: {escape(query)} ({ranking})",
        title_justify="left",
        show_lines=True,
    )
    for column in ("#", "citation", "score", "heading", "text"):
        table.add_column(column, overflow="fold")
    for rank, passage in enumerate(results.passages, start=1):
        text = " ".join(passage.text.split())
        if len(text) > PREVIEW_CHARS:
            text = text[: PREVIEW_CHARS - 1] + "…"
        table.add_row(
            str(rank),
            Text(passage.id),
            f"{passage.score:.4f}",
            Text(passage.title or ""),
            Text(text),
        )
    if not results.passages:
        console.print(
            f"nothing relevant in {collection} for {query!r} (no passage scored "
            f"{results.min_score:g} or more; --min-score 0 shows every passage)",
            highlight=False,
            markup=False,
        )
        return
    console.print(table)
