"""Knowledge search at scale, on SQLite and on PostgreSQL.

For each backend the benchmark makes a fresh database (a SQLite file in a
temporary folder, or a new schema on the PostgreSQL server, dropped
afterwards), ingests a generated help center of at least `--chunks` chunks
through `store.knowledge.crud.ingest_document` (the path the CLI and the API
take), and then times `store.knowledge.search.search` (top 5, full text):

  first    the first search after ingest, which computes the collection's
           statistics (store/knowledge/statistics.py) once per process
  short    2-3 word queries ("refund card")
  long     one-sentence customer questions (tests/retrieval/qa_pairs.yaml)
  common   the collection's most frequent words, six at a time: the worst
           case for an OR-matching full-text index

The text is generated deterministically (seeded) from the sample articles
in chains/knowledge/help_center: each generated article takes a sample
article's sections, renames its products, shifts its numbers and adds
sentences of a seeded filler vocabulary, so the vocabulary grows and the
frequencies spread as in a real corpus. Nothing is downloaded.

It prints ingest time and p50/p99 per query kind and backend; the last line
is one JSON object. Not a test: it asserts nothing; it reports.

    .venv/bin/python bench/retrieval_scale.py                  # both backends, 40,000 chunks
    .venv/bin/python bench/retrieval_scale.py --backends sqlite --chunks 5000
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/retrieval_scale.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from sqlalchemy import Engine
from sqlmodel import Session

from bench.databases import throwaway_database
from store.engine import make_engine
from store.knowledge.crud import ingest_document
from store.knowledge.search import search
from store.knowledge.statistics import CACHE
from store.knowledge.terms import STOPWORDS, words
from store.schema import upgrade

ROOT = Path(__file__).resolve().parents[1]
HELP_CENTER = ROOT / "chains" / "knowledge" / "help_center"
QA_FILE = ROOT / "tests" / "retrieval" / "qa_pairs.yaml"
COLLECTION = "scale"
TOP_K = 5
COMMIT_EVERY = 100
"""Documents per transaction while ingesting."""

PRODUCTS = [
    "tent", "backpack", "sleeping bag", "jacket", "boots", "headlamp", "stove", "kayak",
    "paddle", "trekking poles", "rain shell", "fleece", "water filter", "hammock", "cooler",
]  # fmt: skip
SHORT_QUERIES = [
    "refund card", "cancel subscription", "tent pole broken", "gift card balance",
    "track parcel", "customs fees", "reset password", "price adjustment", "warranty claim",
    "change address", "return window", "damaged item photo", "klarna payment",
    "express shipping cost", "store credit",
]  # fmt: skip


# -- the corpus ---------------------------------------------------------------------------


def _sections(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """(title, [(heading, body)]) of a sample article."""
    title = ""
    sections: list[tuple[str, str]] = []
    heading, body = "Overview", []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            title = line[2:].strip()
        elif line.startswith("## "):
            if body:
                sections.append((heading, "\n".join(body).strip()))
            heading, body = line[3:].strip(), []
        else:
            body.append(line)
    if body:
        sections.append((heading, "\n".join(body).strip()))
    return title, sections


def _filler_vocabulary(rng: random.Random, size: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "tra", "ven", "dor", "sil", "bex", "quo", "ran", "tel", "nu"]
    found: set[str] = set()
    while len(found) < size:
        found.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(found)


def generate_documents(min_chunks: int, seed: int = 13) -> Iterator[tuple[str, str]]:
    """(name, markdown) of generated articles, about 10 chunks each, until
    `min_chunks` chunks' worth of sections were produced."""
    rng = random.Random(seed)
    articles = [_sections(p) for p in sorted(HELP_CENTER.glob("*.md"))]
    filler = _filler_vocabulary(rng, 20_000)
    weights = [1.0 / (rank + 1) for rank in range(len(filler))]  # Zipf-like
    produced = 0
    index = 0
    while produced < min_chunks:
        title, sections = articles[index % len(articles)]
        product = rng.choice(PRODUCTS)
        parts = [f"# {title} ({product}, edition {index})", ""]
        for heading, body in sections:
            shifted = re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(0, 9)), body)
            sentence = " ".join(rng.choices(filler, weights=weights, k=rng.randint(8, 20)))
            parts += [
                f"## {heading} for your {product}",
                "",
                shifted.replace("Trail Box", f"{product} plan"),
                "",
                f"Note for the {product}: {sentence}.",
                "",
            ]
            produced += 1 + len(body) // 700
        yield (
            f"generated/{index:05d}-{Path(title.lower().replace(' ', '-')).name}.md",
            "\n".join(parts),
        )
        index += 1


def _pairs() -> list[dict[str, str]]:
    data: dict[str, Any] = yaml.safe_load(QA_FILE.read_text(encoding="utf-8"))
    return list(data["pairs"])


def long_queries() -> list[str]:
    return [item["query"] for item in _pairs()]


def _slug(title: str) -> str:
    return Path(title.lower().replace(" ", "-")).name


def top1_hits(engine: Engine) -> tuple[int, int]:
    """In-sample questions whose first passage comes from a generated copy
    of the expected article: what candidate selection at scale keeps of the
    ranking (39/39 on the sample collection itself)."""
    titles = {path.name: _sections(path)[0] for path in HELP_CENTER.glob("*.md")}
    hits = 0
    pairs = _pairs()
    with Session(engine) as session:
        for pair in pairs:
            found = search(session, collection=COLLECTION, query=pair["query"], top_k=1)
            suffix = f"-{_slug(titles[pair['document']])}.md"
            hits += bool(found) and found[0].document.endswith(suffix)
    return hits, len(pairs)


def common_queries(session: Session, count: int) -> list[str]:
    """Six of the collection's most frequent words per query (English words
    of the sample articles, not the filler vocabulary, and no stopwords)."""
    english = {w for p in HELP_CENTER.glob("*.md") for w in words(p.read_text(encoding="utf-8"))}
    frequency = CACHE.get(session, collection=COLLECTION).word_frequency
    ranked = [w for w, _ in Counter(frequency).most_common(2_000)]
    common = [w for w in ranked if w in english and w not in STOPWORDS and w.isalpha()][:30]
    rng = random.Random(7)
    return [" ".join(rng.sample(common, 6)) for _ in range(count)]


# -- one backend --------------------------------------------------------------------------


def ingest(engine: Engine, min_chunks: int) -> tuple[int, int, float]:
    """(documents, chunks, seconds) for ingesting the generated corpus."""
    started = time.perf_counter()
    documents = chunks = 0
    session = Session(engine)
    try:
        for name, body in generate_documents(min_chunks):
            result = ingest_document(
                session, collection=COLLECTION, name=name, source=name, text=body
            )
            documents += 1
            chunks += result.chunks
            if documents % COMMIT_EVERY == 0:
                session.commit()
            if chunks >= min_chunks and documents % COMMIT_EVERY == 0:
                break
        session.commit()
    finally:
        session.close()
    return documents, chunks, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_queries(engine: Engine, queries: list[str], repeat: int) -> dict[str, float]:
    timings: list[float] = []
    hits = 0
    with Session(engine) as session:
        for _ in range(repeat):
            for query in queries:
                started = time.perf_counter()
                found = search(session, collection=COLLECTION, query=query, top_k=TOP_K)
                timings.append((time.perf_counter() - started) * 1000)
                hits += bool(found)
    return {
        "p50_ms": round(percentile(timings, 0.5), 1),
        "p99_ms": round(percentile(timings, 0.99), 1),
        "max_ms": round(max(timings), 1),
        "queries": len(timings),
        "with_passages": hits,
    }


def run_backend(backend: str, min_chunks: int, repeat: int) -> dict[str, Any]:
    with throwaway_database(backend, "retrieval") as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            documents, chunks, ingest_s = ingest(engine, min_chunks)
            print(
                f"{backend}: ingested {documents:,} documents, {chunks:,} chunks "
                f"in {ingest_s:.1f} s ({chunks / ingest_s:,.0f} chunks/s)",
                flush=True,
            )
            CACHE.clear()
            with Session(engine) as session:
                started = time.perf_counter()
                search(session, collection=COLLECTION, query="refund card", top_k=TOP_K)
                first_ms = (time.perf_counter() - started) * 1000
                common = common_queries(session, 15)
            print(f"{backend}: first search (statistics) {first_ms:,.0f} ms", flush=True)
            result: dict[str, Any] = {
                "documents": documents,
                "chunks": chunks,
                "ingest_s": round(ingest_s, 1),
                "first_search_ms": round(first_ms, 1),
            }
            for kind, queries in (
                ("short", SHORT_QUERIES),
                ("long", long_queries()),
                ("common", common),
            ):
                figures = time_queries(engine, queries, repeat)
                result[kind] = figures
                print(
                    f"{backend}: {kind:6} p50 {figures['p50_ms']:6.1f} ms  "
                    f"p99 {figures['p99_ms']:6.1f} ms  ({figures['queries']} queries, "
                    f"e.g. {queries[0]!r})",
                    flush=True,
                )
            hits, total = top1_hits(engine)
            result["in_sample_top1"] = f"{hits}/{total}"
            print(
                f"{backend}: in-sample questions answered first by a copy of their article: "
                f"{hits}/{total}",
                flush=True,
            )
            return result
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--chunks", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=2, help="times each query runs")
    args = parser.parse_args()
    figures: dict[str, Any] = {"chunks_target": args.chunks, "top_k": TOP_K}
    for backend in args.backends.split(","):
        figures[backend] = run_backend(backend.strip(), args.chunks, args.repeat)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
