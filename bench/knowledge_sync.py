"""Ingest in sync at size, on SQLite and on PostgreSQL.

For each backend the benchmark makes a fresh database (a SQLite file in a
temporary folder, or a new schema on the PostgreSQL server, dropped
afterwards) and times `store.knowledge.sync.sync_documents` (what `chorus
ingest` runs, one transaction a sync) over a generated folder: `--copies`
regional copies of the sample help center (chains/knowledge/help_center),
each article with a line of its own so no two documents are the same.

  first      every document added (chunked, stored, indexed)
  unchanged  the same folder again: hashes compared, nothing written
  changed    with --prune: 5% renamed, 5% deleted, 5% edited
  reroot     with --prune: the folder ingested from its parent (every
             name gains a prefix): all renamed in place, nothing re-chunked

`prepare` is the time to read and hash the folder's documents before a sync
(included in none of the sync figures). Prints one line per step and
backend; the last line is one JSON object. Not a test: it reports.

    .venv/bin/python bench/knowledge_sync.py                  # both backends, 50 copies
    .venv/bin/python bench/knowledge_sync.py --backends sqlite --copies 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/knowledge_sync.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, func
from sqlmodel import select

from bench.databases import throwaway_database
from store.engine import make_engine, session_scope
from store.knowledge.crud import PreparedDocument, prepare_document
from store.knowledge.sync import SyncReport, sync_documents
from store.knowledge.tables import KnowledgeChunk
from store.schema import upgrade

ROOT = Path(__file__).resolve().parents[1]
HELP_CENTER = ROOT / "chains" / "knowledge" / "help_center"
COLLECTION = "sync"


def folder(copies: int) -> dict[str, str]:
    """name -> text of the generated folder."""
    articles = {path.name: path.read_text("utf-8") for path in sorted(HELP_CENTER.glob("*.md"))}
    return {
        f"region{i:03d}/{name}": f"{body}\n\n## Regional note\n\nRegion {i} ships from depot {i}.\n"
        for i in range(copies)
        for name, body in articles.items()
    }


def prepared(files: dict[str, str]) -> tuple[list[PreparedDocument], float]:
    started = time.perf_counter()
    docs = [prepare_document(name=n, source=f"bench/{n}", text=t) for n, t in files.items()]
    return docs, time.perf_counter() - started


def timed_sync(
    engine: Engine, documents: list[PreparedDocument], *, prune: bool
) -> tuple[SyncReport, float]:
    started = time.perf_counter()
    with session_scope(engine) as session:
        report = sync_documents(session, collection=COLLECTION, documents=documents, prune=prune)
    return report, time.perf_counter() - started


def run_backend(backend: str, copies: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with throwaway_database(backend, "sync") as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            files = folder(copies)
            names = list(files)
            step = max(1, len(names) // 20)  # 5%
            renamed = set(names[0::step][: len(names) // 20])
            deleted = set(names[1::step][: len(names) // 20])
            edited = set(names[2::step][: len(names) // 20])
            changed = {
                (f"{n[:-3]}-moved.md" if n in renamed else n): (
                    f"{t}\nEdited.\n" if n in edited else t
                )
                for n, t in files.items()
                if n not in deleted
            }
            steps = [
                ("first", files, False),
                ("unchanged", files, False),
                ("changed", changed, True),
                ("reroot", {f"kb/{n}": t for n, t in changed.items()}, True),
            ]
            for label, content, prune in steps:
                documents, prepare_s = prepared(content)
                report, sync_s = timed_sync(engine, documents, prune=prune)
                figures[label] = {
                    "documents": len(documents),
                    "sync_s": round(sync_s, 3),
                    "prepare_s": round(prepare_s, 3),
                    **report.counts(),
                }
                print(
                    f"{backend:10s} {label:9s} {len(documents):5d} documents: sync "
                    f"{sync_s * 1000:8.1f} ms (prepare {prepare_s * 1000:6.1f} ms) "
                    f"{report.counts()}",
                    flush=True,
                )
            with session_scope(engine) as session:
                chunks = session.exec(
                    select(func.count()).select_from(KnowledgeChunk)  # type: ignore[arg-type]
                ).one()
            figures["chunks"] = int(chunks)
        finally:
            engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--copies", type=int, default=50, help="copies of the help center")
    args = parser.parse_args()
    figures: dict[str, Any] = {"copies": args.copies}
    for backend in args.backends.split(","):
        figures[backend] = run_backend(backend.strip(), args.copies)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
