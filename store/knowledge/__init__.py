"""Knowledge collections for retrieval: tables, full-text index, CRUD and search.

A collection holds documents (a help center, a policy handbook); a document
is split into chunks (see `store.chunking`) that retrieval ranks and cites as
`<document>#<position>`. Full-text ranking is the database's own: SQLite FTS5
(bm25) or PostgreSQL full-text search (`ts_rank` over a stored, GIN-indexed
tsvector). A collection with an `embedding_alias` also keeps an embedding per
chunk, filled lazily by the retrieve activity, and is ranked by reciprocal-
rank fusion of the full-text ranking and cosine similarity.

One job per module; import from the module that does it:

- `errors`: the knowledge store's exceptions;
- `names`: what a collection or document may be called (citation ids);
- `tables`: the tables, their public views and the full-text index DDL;
- `crud`: collections and documents (ingest, list, delete);
- `embeddings`: chunks' embeddings (which are missing, storing them);
- `search`: query words, full-text and vector rankings, their fusion;
- `evaluation`: retrieval quality on labelled questions (hit@1, hit@3, MRR,
  "nothing relevant"), for bench/retrieval_eval.py and the tests.

Like `store.crud`, functions are keyword-only, take the caller's Session and
never commit it.
"""
