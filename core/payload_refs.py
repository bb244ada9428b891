"""Large payloads by reference: a payload over a threshold is stored outside
Temporal's history, and history holds a small reference to it.

Temporal warns at 256 KB per payload and refuses 2 MB; a retrieval context
of a few megabytes, or an agent's conversation after many turns, would fail
the run. `PayloadRefCodec` sits last in the one codec chain
(`core.converter`: encryption first, then this), so what it stores is the
payload as Temporal would have carried it, ciphertext when encryption is on,
and workflows and activities never see the difference.

The reference is a payload of its own: `encoding: chorus/payload-ref`, the
SHA-256 and size of the stored bytes and the store's name in its metadata
(and, for a person reading raw history, the same as JSON in its data). The
stored bytes are the whole serialized payload (data and metadata), as
`core.encryption` does, so decoding gives back exactly what was encoded.

Content-addressed: a blob's name is the SHA-256 of its bytes, so writing
the same payload again (a retried start, a replayed workflow task) finds it
stored and only marks it used. Encryption draws a fresh nonce per encoding,
so with a key configured a re-encoded value is other bytes and another blob;
the retention sweep removes the one no run reads.

Stores (`BlobStore`: `put`, `get`, `delete`, `sweep`): the application
database (`store.payload_blobs`, table `payload_blobs`, the default: every
API, worker and CLI process of a deployment already reaches it) and a
directory (`FilesystemBlobStore`; shared storage when processes run on
several hosts). The database store lives in `store/`, above this package, so
it registers itself here (`register_blob_store`) when `store` is imported;
`blob_store_for(settings)` picks the configured one when a payload first
needs it, so a process that never meets a large payload never opens it.

A reference whose blob is gone fails with `PayloadBlobMissing` naming the
digest and the store (a workflow task failure Temporal retries, as for a
missing encryption key), never with garbage; bytes that do not hash to
their name fail with `PayloadBlobCorrupt`. Payloads without the reference
encoding pass through, so histories recorded before this stay readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

if TYPE_CHECKING:
    from core.settings import Settings

ENCODING_KEY = "encoding"
REF_ENCODING = b"chorus/payload-ref"
SHA256_KEY = "chorus-ref-sha256"
SIZE_KEY = "chorus-ref-size"
STORE_KEY = "chorus-ref-store"

DEFAULT_OFFLOAD_BYTES = 256 * 1024
"""Temporal's payload warning: anything larger leaves history."""

TOUCH_AFTER = timedelta(hours=1)
"""A read marks a blob used at most this often (a write per replayed
payload would be wasted: retention is counted in days)."""

OFFLOAD_ENV = "CHORUS_PAYLOAD_OFFLOAD_BYTES"
STORE_ENV = "CHORUS_PAYLOAD_STORE"
RETENTION_ENV = "CHORUS_PAYLOAD_RETENTION_DAYS"

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class PayloadStoreError(RuntimeError):
    """A payload stored by reference cannot be read or written."""


class PayloadBlobMissing(PayloadStoreError):
    """A reference names a blob the store does not hold.

    Like `PayloadKeyUnavailable`, deliberately not a non-retryable
    ApplicationError: in a workflow task the SDK fails the task, Temporal
    retries it and the UI shows this message, so a run whose blob comes back
    (a restored backup, the right store configured) resumes.
    """

    def __init__(self, digest: str, size: int | None, written_to: str, reading: str) -> None:
        self.digest = digest
        self.store = reading
        where = f"the {reading!r} payload store"
        if written_to and written_to != reading:
            where += f" (the reference says it was written to {written_to!r}; {STORE_ENV})"
        of = f" of {size} bytes" if size is not None else ""
        super().__init__(
            f"payload blob sha256:{digest}{of} is not in {where}: it was deleted (the "
            f"retention sweep removes blobs unused for {RETENTION_ENV} days) or never "
            "reached this store"
        )


class PayloadBlobCorrupt(PayloadStoreError):
    """A stored blob does not hash to its name (altered, or cut short)."""

    def __init__(self, digest: str, reason: str) -> None:
        self.digest = digest
        super().__init__(f"payload blob sha256:{digest} is corrupt: {reason}")


class PayloadStoreUnavailable(PayloadStoreError):
    """This process has no payload store to read a reference from, or the
    configured one is not available here."""


@dataclass(frozen=True)
class SweepResult:
    blobs: int
    bytes: int


@runtime_checkable
class BlobStore(Protocol):
    """Where large payloads live: bytes by their SHA-256 (hex). Blocking
    calls; the codec runs them on a thread."""

    name: str

    def put(self, digest: str, data: bytes) -> None:
        """Store `data` under `digest` (its SHA-256) unless it is there
        already; either way mark it used now."""

    def get(self, digest: str) -> bytes | None:
        """The bytes stored under `digest` (marked used), or None."""

    def delete(self, digest: str) -> bool:
        """Remove one blob; False if it was not there."""

    def sweep(self, unused_since: datetime) -> SweepResult:
        """Remove every blob last used before `unused_since`."""


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """`digest` if it is a SHA-256 in lowercase hex (it becomes a file name
    or a key: nothing else may pass)."""
    if not _DIGEST.match(digest):
        raise ValueError(f"not a SHA-256 digest in hex: {digest[:80]!r}")
    return digest


def verified(digest: str, data: bytes) -> bytes:
    """`data`, checked against the name it was stored under."""
    actual = digest_of(data)
    if actual != digest:
        raise PayloadBlobCorrupt(digest, f"its {len(data)} bytes hash to sha256:{actual}")
    return data


# -- the filesystem store -----------------------------------------------------------------


class FilesystemBlobStore:
    """Blobs as files `ROOT/ab/abcdef…` (the digest, fanned out by its first
    two characters); a file's modification time is when it was last used.
    Writes go to a temporary file renamed into place, so a reader never sees
    half a blob and two writers of one blob both succeed."""

    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def put(self, digest: str, data: bytes) -> None:
        path = self._path(digest)
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, digest: str) -> bytes | None:
        path = self._path(digest)
        try:
            data = path.read_bytes()
            if time.time() - path.stat().st_mtime > TOUCH_AFTER.total_seconds():
                os.utime(path)
        except FileNotFoundError:
            return None
        return data

    def delete(self, digest: str) -> bool:
        try:
            self._path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def sweep(self, unused_since: datetime) -> SweepResult:
        cutoff = unused_since.timestamp()
        blobs = size = 0
        if not self.root.is_dir():
            return SweepResult(0, 0)
        for fan in self.root.iterdir():
            if not fan.is_dir() or len(fan.name) != 2:
                continue
            for path in fan.iterdir():
                try:
                    stat = path.stat()
                    if stat.st_mtime >= cutoff:
                        continue
                    if not _DIGEST.match(path.name):
                        if path.name.startswith(".tmp-"):  # a writer that died
                            path.unlink()
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue
                blobs += 1
                size += stat.st_size
        return SweepResult(blobs, size)


# -- which store a process uses -------------------------------------------------------------

BlobStoreFactory = Callable[["Settings"], BlobStore]

_FACTORIES: dict[str, BlobStoreFactory] = {}


def register_blob_store(name: str, factory: BlobStoreFactory) -> None:
    """Offer a store under `name` (`CHORUS_PAYLOAD_STORE`); packages above
    `core` (the database store in `store/`) register theirs when imported."""
    _FACTORIES[name] = factory


def _filesystem(settings: Settings) -> BlobStore:
    return FilesystemBlobStore(settings.effective_payload_store_dir)


register_blob_store("filesystem", _filesystem)


def blob_store_for(settings: Settings) -> BlobStore:
    """The configured store (`CHORUS_PAYLOAD_STORE`)."""
    name = settings.payload_store
    factory = _FACTORIES.get(name)
    if factory is None:
        raise PayloadStoreUnavailable(
            f"{STORE_ENV} is {name!r}, but this process has no such payload store "
            f"(available: {', '.join(sorted(_FACTORIES))}); the database store is "
            "registered by importing store.payload_blobs"
        )
    return factory(settings)


# -- the codec ------------------------------------------------------------------------------


def is_reference(payload: Payload) -> bool:
    return payload.metadata.get(ENCODING_KEY) == REF_ENCODING


def reference(digest: str, size: int, store: str) -> Payload:
    """The payload history holds instead of `size` bytes stored as `digest`."""
    return Payload(
        metadata={
            ENCODING_KEY: REF_ENCODING,
            SHA256_KEY: digest.encode(),
            SIZE_KEY: str(size).encode(),
            STORE_KEY: store.encode(),
        },
        data=json.dumps({"sha256": digest, "size": size, "store": store}).encode(),
    )


@dataclass(frozen=True)
class Reference:
    digest: str
    size: int | None
    store: str

    @classmethod
    def of(cls, payload: Payload) -> Reference:
        digest = payload.metadata.get(SHA256_KEY, b"").decode("ascii", "replace")
        if not _DIGEST.match(digest):
            raise PayloadBlobCorrupt(digest[:80], "the reference carries no valid SHA-256")
        raw_size = payload.metadata.get(SIZE_KEY, b"").decode("ascii", "replace")
        size = int(raw_size) if raw_size.isdigit() else None
        return cls(digest, size, payload.metadata.get(STORE_KEY, b"").decode("utf-8", "replace"))


class PayloadRefCodec(PayloadCodec):
    """Stores payloads larger than `threshold` bytes in a `BlobStore` and
    puts a reference in their place; resolves references on the way back.

    `store` is a store, a function that makes one (called once, when a
    payload first needs it), or None: then nothing is offloaded and a
    reference is refused with `PayloadStoreUnavailable`. A threshold of 0
    turns offloading off; references are still resolved.
    """

    def __init__(
        self,
        store: BlobStore | Callable[[], BlobStore] | None = None,
        *,
        threshold: int = DEFAULT_OFFLOAD_BYTES,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self._store: BlobStore | None = None
        self._factory: Callable[[], BlobStore] | None = None
        if isinstance(store, BlobStore):
            self._store = store
        elif store is not None:
            self._factory = store
        self._lock = threading.Lock()

    @property
    def offloading(self) -> bool:
        return self.threshold > 0 and (self._store is not None or self._factory is not None)

    def store(self) -> BlobStore:
        """The store, made on first use."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    if self._factory is None:
                        raise PayloadStoreUnavailable(
                            "payload is stored by reference, but this process has no payload "
                            f"store configured ({STORE_ENV})"
                        )
                    self._store = self._factory()
        return self._store

    def _too_large(self, payload: Payload) -> bool:
        return self.offloading and not is_reference(payload) and payload.ByteSize() > self.threshold

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not any(self._too_large(p) for p in payloads):
            return list(payloads)
        return await asyncio.to_thread(self.encode_sync, payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not any(is_reference(p) for p in payloads):
            return list(payloads)
        return await asyncio.to_thread(self.decode_sync, payloads)

    def encode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        encoded: list[Payload] = []
        for payload in payloads:
            if not self._too_large(payload):
                encoded.append(payload)
                continue
            store = self.store()
            # Deterministic: map entries (metadata) in one order, so equal
            # payloads are equal bytes and one blob.
            data = payload.SerializeToString(deterministic=True)
            digest = digest_of(data)
            store.put(digest, data)
            encoded.append(reference(digest, len(data), store.name))
        return encoded

    def decode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        decoded: list[Payload] = []
        for payload in payloads:
            if not is_reference(payload):
                decoded.append(payload)
                continue
            ref = Reference.of(payload)
            store = self.store()
            data = store.get(ref.digest)
            if data is None:
                raise PayloadBlobMissing(ref.digest, ref.size, ref.store, store.name)
            decoded.append(Payload.FromString(verified(ref.digest, data)))
        return decoded


def payload_ref_codec(settings: Settings) -> PayloadRefCodec:
    """The codec of a process configured by `settings`: its store is made
    when a payload first needs it."""
    return PayloadRefCodec(
        lambda: blob_store_for(settings), threshold=settings.payload_offload_bytes
    )


def sweep_cutoff(retention_days: float, now: datetime | None = None) -> datetime:
    """Blobs last used before this instant are past retention."""
    return (now or datetime.now(UTC)) - timedelta(days=retention_days)
