"""The knowledge shipped with the project: the fictional store's Help Center
and its brand guide, which the flagship chain (chains/support_triage.yaml)
retrieves from. The demo, the replay-history recorder and tests load them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from store.engine import session_scope
from store.knowledge.crud import ensure_collection, ingest_document

KNOWLEDGE_DIR = Path(__file__).resolve().parents[1] / "chains" / "knowledge"
SAMPLE_COLLECTIONS: dict[str, list[Path]] = {
    "help_center": sorted((KNOWLEDGE_DIR / "help_center").glob("*.md")),
    "brand": [KNOWLEDGE_DIR / "brand_guide.md"],
}


def ingest_sample_knowledge(engine: Engine) -> dict[str, int]:
    """Ingest every sample collection (idempotent: unchanged documents are
    left alone). Returns the number of documents per collection."""
    counts: dict[str, int] = {}
    with session_scope(engine) as session:
        for collection, paths in SAMPLE_COLLECTIONS.items():
            ensure_collection(session, name=collection)
            for path in paths:
                ingest_document(
                    session,
                    collection=collection,
                    name=path.name,
                    source=str(path.relative_to(KNOWLEDGE_DIR.parents[1])),
                    text=path.read_text(encoding="utf-8"),
                )
            counts[collection] = len(paths)
    return counts
