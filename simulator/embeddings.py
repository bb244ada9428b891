"""Deterministic bag-of-words embeddings.

Retrieval tests need embeddings where texts that share words are close and
unrelated texts are not, and that are identical on every machine and run.
Each lower-cased word is hashed (blake2b, never Python's salted `hash()`) to a
bucket and a sign (signed feature hashing keeps unrelated texts near
orthogonal instead of all-positive), then the vector is L2-normalised.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    found = _WORD.findall(text.lower())
    # A text with no word still gets a stable, non-zero vector.
    return found or [text.strip().lower()]


def embed(text: str, dim: int) -> list[float]:
    """A unit vector of `dim` floats for `text`."""
    vector = [0.0] * dim
    for word in words(text):
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "big")
        bucket = value % dim
        sign = 1.0 if (value >> 63) & 1 == 0 else -1.0
        vector[bucket] += sign
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        # Words cancelled out in every bucket: fall back to the first word's bucket.
        vector[int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest()) % dim] = 1.0
        return vector
    return [x / norm for x in vector]


def to_base64(vector: list[float]) -> str:
    """OpenAI's `encoding_format: base64`: little-endian float32s, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
