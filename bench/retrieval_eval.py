"""Retrieval quality of the sample Help Center, per backend, ranking mode and question set.

    .venv/bin/python bench/retrieval_eval.py [--backends sqlite,postgresql]
        [--providers simulator,wordllama] [--misses]

Ingests chains/knowledge/help_center into a fresh database per backend (a
SQLite file, a new schema on CHORUS_BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test), then asks the in-sample
questions (tests/retrieval/qa_pairs.yaml: `pairs`, which tuning may look at)
and the held-out ones (tests/retrieval/heldout_questions.yaml, which it may
not) under full-text ranking and hybrid ranking with each embedding provider:

- `simulator`: the simulator's 64-d hashed bag of words (what `sim-embed`
  serves; lexical, so it adds no knowledge of meaning);
- `wordllama`: the local model behind `provider: local`
  (activities/retrieval/local_embeddings.py), if the `local-embeddings`
  extra is installed.

Prints hit@1, hit@3, MRR, the share of uncovered questions answered "nothing
relevant" and of covered ones wrongly answered so; the last line is one JSON
object. Nothing is downloaded: Hugging Face is set offline before any model loads.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from activities.retrieval.local_embeddings import (  # noqa: E402
    MIN_SIMILARITY,
    LocalEmbeddingError,
    load_local_model,
)
from bench.databases import throwaway_database  # noqa: E402
from bench.harness import run_bench  # noqa: E402
from simulator.embeddings import embed as simulator_embed  # noqa: E402
from store import make_engine, session_scope  # noqa: E402
from store.knowledge.crud import ensure_collection  # noqa: E402
from store.knowledge.evaluation import (  # noqa: E402
    EmbedTexts,
    Question,
    Report,
    embed_collection,
    evaluate,
    ingest_folder,
    load_questions,
)
from store.schema import upgrade  # noqa: E402

HELP_CENTER = ROOT / "chains" / "knowledge" / "help_center"
IN_SAMPLE = ROOT / "tests" / "retrieval" / "qa_pairs.yaml"
HELD_OUT = ROOT / "tests" / "retrieval" / "heldout_questions.yaml"
COLLECTION = "help_center"
SIMULATOR_DIM = 64
"""The `sim-embed` model's dimensions (simulator/default_models.yaml)."""
LOCAL_MODEL = "wordllama-l2-supercat-256"


def question_sets() -> dict[str, list[Question]]:
    return {
        "in-sample": load_questions(IN_SAMPLE, "pairs"),
        "held-out": load_questions(HELD_OUT, "questions"),
    }


def providers(names: list[str]) -> dict[str, EmbedTexts]:
    """The embedding functions asked for; one that cannot load is skipped
    with a note (the local extra may not be installed)."""
    found: dict[str, EmbedTexts] = {}
    for name in names:
        if name == "simulator":
            found[name] = lambda texts: [simulator_embed(t, SIMULATOR_DIM) for t in texts]
        elif name == "wordllama":
            try:
                found[name] = load_local_model(LOCAL_MODEL).embed
            except LocalEmbeddingError as exc:
                print(f"skipping wordllama: {exc}", file=sys.stderr)
        else:
            raise SystemExit(f"unknown provider {name!r} (known: simulator, wordllama)")
    return found


def run_backend(
    backend: str, embedders: dict[str, EmbedTexts], show_misses: bool
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sets = question_sets()
    with throwaway_database(backend, "eval") as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            with session_scope(engine) as session:
                ingest_folder(session, collection=COLLECTION, folder=HELP_CENTER, root=ROOT)
            modes: list[tuple[str, EmbedTexts | None]] = [("full-text", None)]
            modes += [(f"hybrid/{name}", embed) for name, embed in embedders.items()]
            for mode, embed in modes:
                with session_scope(engine) as session:
                    started = time.perf_counter()
                    if embed is not None:
                        # A new alias clears the previous provider's vectors.
                        ensure_collection(session, name=COLLECTION, embedding_alias=mode)
                        session.flush()
                        embed_collection(session, collection=COLLECTION, embed=embed)
                    for set_name, questions in sets.items():
                        report = evaluate(
                            session,
                            collection=COLLECTION,
                            questions=questions,
                            label=f"{backend:<10} {mode:<18} {set_name:<9}",
                            embed=embed,
                            min_similarity=(
                                MIN_SIMILARITY.get(LOCAL_MODEL)
                                if mode == "hybrid/wordllama"
                                else None
                            ),
                        )
                        print(report.line(), flush=True)
                        if show_misses and report.misses:
                            print("\n".join(report.misses), flush=True)
                        rows.append(_row(backend, mode, set_name, report))
                    rows[-1]["seconds"] = round(time.perf_counter() - started, 2)
        finally:
            engine.dispose()
    return rows


def _row(backend: str, mode: str, set_name: str, report: Report) -> dict[str, Any]:
    return {"backend": backend, "mode": mode, "set": set_name, **report.figures()}


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--providers", default="simulator,wordllama")
    parser.add_argument("--misses", action="store_true", help="list every miss")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the migrations' progress lines
    embedders = providers([p for p in args.providers.split(",") if p])
    results: list[dict[str, Any]] = []
    for backend in [b for b in args.backends.split(",") if b]:
        results.extend(run_backend(backend, embedders, args.misses))
    return {"benchmark": "retrieval_eval", "results": results}


if __name__ == "__main__":
    run_bench(main, "retrieval_eval")
