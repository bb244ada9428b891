"""Choosing the hybrid fusion weight on the TUNING questions only.

    .venv/bin/python bench/retrieval_fusion_sweep.py [--providers wordllama,simulator]
        [--weights 0.3,0.4,...]

For each `store.knowledge.search.HYBRID_TEXT_WEIGHT` in the grid (hybrid
score = weight * full-text score + (1 - weight) * cosine), on SQLite, asks
the in-sample questions (tests/retrieval/qa_pairs.yaml `pairs`) and the
off-topic, stopword-only and nonsense questions of
tests/retrieval/off_topic.yaml at the store's DEFAULT_MIN_SCORE, and prints
hit@1, MRR, covered questions wrongly answered "nothing relevant" and
off-topic ones rightly so. It never reads the held-out questions
(tests/retrieval/heldout_questions.yaml): those measure the chosen weight
afterwards (bench/retrieval_eval.py). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

import store.knowledge.search as search_module  # noqa: E402
from bench.harness import run_bench  # noqa: E402
from bench.retrieval_eval import COLLECTION, HELP_CENTER, IN_SAMPLE, providers  # noqa: E402
from store import make_engine, session_scope  # noqa: E402
from store.knowledge.crud import ensure_collection  # noqa: E402
from store.knowledge.evaluation import (  # noqa: E402
    Question,
    embed_collection,
    evaluate,
    ingest_folder,
    load_questions,
)
from store.schema import upgrade  # noqa: E402

OFF_TOPIC = ROOT / "tests" / "retrieval" / "off_topic.yaml"


def tuning_questions() -> list[Question]:
    off_topic = yaml.safe_load(OFF_TOPIC.read_text(encoding="utf-8"))
    uncovered = [
        Question(query=q, documents=(), kind=section)
        for section, items in off_topic.items()
        for q in items
    ]
    return load_questions(IN_SAMPLE, "pairs") + uncovered


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--providers", default="wordllama,simulator")
    parser.add_argument("--weights", default="0.2,0.3,0.4,0.5,0.6,0.7,0.8")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    embedders = providers([p for p in args.providers.split(",") if p])
    weights = [float(w) for w in args.weights.split(",")]
    questions = tuning_questions()
    original = search_module.HYBRID_TEXT_WEIGHT
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="chorus-sweep-") as folder:
        engine = make_engine(f"sqlite:///{folder}/chorus.db")
        upgrade(engine)
        with session_scope(engine) as session:
            ingest_folder(session, collection=COLLECTION, folder=HELP_CENTER, root=ROOT)
        try:
            for name, embed in embedders.items():
                with session_scope(engine) as session:
                    ensure_collection(session, name=COLLECTION, embedding_alias=name)
                    session.flush()
                    embed_collection(session, collection=COLLECTION, embed=embed)
                    for weight in weights:
                        search_module.HYBRID_TEXT_WEIGHT = weight
                        report = evaluate(
                            session,
                            collection=COLLECTION,
                            questions=questions,
                            label=f"{name:<10} text weight {weight:.2f}",
                            embed=embed,
                        )
                        print(report.line(), flush=True)
                        rows.append({"provider": name, "weight": weight, **report.figures()})
        finally:
            search_module.HYBRID_TEXT_WEIGHT = original
            engine.dispose()
    return {"benchmark": "retrieval_fusion_sweep", "results": rows}


if __name__ == "__main__":
    run_bench(main, "retrieval_fusion_sweep")
