"""Knowledge collections for retrieval: tables, full-text index, CRUD and search.

A collection holds documents (a help center, a policy handbook); a document
is split into chunks (see `store.chunking`) that retrieval ranks and cites as
`<document>#<position>`. The database's full-text index (SQLite FTS5, or
PostgreSQL's GIN-indexed tsvector) picks candidates; they are scored alike
on both backends, 0..1, with the collection's own statistics. A collection
with an `embedding_alias` also keeps an embedding per chunk, filled lazily
by the retrieve activity, and is ranked by a weighted sum of the full-text
score and cosine similarity.

One job per module; import from the module that does it:

- `errors`: the knowledge store's exceptions;
- `names`: what a collection or document may be called (citation ids);
- `tables`: the tables, their public views and the full-text index DDL;
- `crud`: collections and documents (ingest, list, delete);
- `embeddings`: chunks' embeddings (which are missing, storing them);
- `search`: query words, candidates, scores in 0..1, fusion, `min_score`;
- `terms`: the one tokeniser and stemmer ranking uses on both backends;
- `statistics`: per-collection word and stem frequencies (cached per process);
- `typos`: query words corrected to the collection's vocabulary;
- `scoring`: BM25 over text and weighted headings, normalised to 0..1;
- `evaluation`: retrieval quality on labelled questions (hit@1, hit@3, MRR,
  "nothing relevant"), for bench/retrieval_eval.py and the tests.

Like `store.crud`, functions are keyword-only, take the caller's Session and
never commit it.
"""
