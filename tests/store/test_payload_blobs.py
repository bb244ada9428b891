"""Large payloads by reference (core/payload_refs.py) over both stores: the
application database (`payload_blobs`, on SQLite and PostgreSQL) and a
directory. A blob written twice is stored once; a reference round-trips to
the exact payload, ciphertext when encryption is on; a reference whose blob
is missing, or altered, fails with a typed error naming the digest; the
sweep removes only blobs unused past the retention."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlmodel import Session
from temporalio.api.common.v1 import Payload

from core.converter import converter_for
from core.encryption import load_keyring, new_key
from core.payload_refs import (
    REF_ENCODING,
    BlobStore,
    FilesystemBlobStore,
    PayloadBlobCorrupt,
    PayloadBlobMissing,
    PayloadRefCodec,
    PayloadStoreUnavailable,
    blob_store_for,
    digest_of,
    is_reference,
    sweep_cutoff,
)
from core.settings import Settings
from store.payload_blobs import DatabaseBlobStore, PayloadBlob
from tests.pg import empty_database, engine_with_tables

THRESHOLD = 4096
CANARY = "canary-5e1f: the customer's whole order history"


@pytest.fixture(params=["sqlite", "postgresql", "filesystem"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    """Each store: the database one on a SQLite file and on a PostgreSQL
    schema (tests/pg.py), the filesystem one in tmp_path."""
    if request.param == "filesystem":
        yield FilesystemBlobStore(tmp_path / "payloads")
        return
    with (
        empty_database(
            request,
            request.param,
            sqlite_file=tmp_path / "db" / "chorus.db",
            schema_prefix="chorus_blobs_",
        ) as url,
        engine_with_tables(url) as engine,
    ):
        yield DatabaseBlobStore(engine)


def count(store: BlobStore) -> int:
    if isinstance(store, DatabaseBlobStore):
        with Session(store.engine) as session:
            return session.execute(select(func.count()).select_from(PayloadBlob)).scalar_one()
    assert isinstance(store, FilesystemBlobStore)
    return sum(1 for p in store.root.rglob("*") if p.is_file())


def age(store: BlobStore, digest: str, days: float) -> None:
    """Make a blob look last used `days` ago."""
    when = datetime.now(UTC) - timedelta(days=days)
    if isinstance(store, DatabaseBlobStore):
        with Session(store.engine) as session:
            session.execute(
                update(PayloadBlob).where(PayloadBlob.digest == digest).values(last_used_at=when)
            )
            session.commit()
        return
    assert isinstance(store, FilesystemBlobStore)
    os.utime(store.root / digest[:2] / digest, (when.timestamp(), when.timestamp()))


def big(n: int = 20_000) -> dict[str, str]:
    return {"ticket": CANARY, "context": "x" * n}


async def test_a_large_payload_becomes_a_reference_and_comes_back(blob_store: BlobStore) -> None:
    converter = converter_for(load_keyring(None), PayloadRefCodec(blob_store, threshold=THRESHOLD))

    [small, large] = await converter.encode([{"ticket": "short"}, big()])

    assert not is_reference(small) and small.metadata["encoding"] == b"json/plain"
    assert large.metadata["encoding"] == REF_ENCODING
    assert large.ByteSize() < 400 and CANARY.encode() not in large.SerializeToString()
    assert await converter.decode([small, large], [dict, dict]) == [{"ticket": "short"}, big()]
    assert count(blob_store) == 1


async def test_the_same_blob_written_twice_is_stored_once(blob_store: BlobStore) -> None:
    codec = PayloadRefCodec(blob_store, threshold=THRESHOLD)
    converter = converter_for(load_keyring(None), codec)

    first = await converter.encode([big()])
    second = await converter.encode([big()])
    blob = b"b" * 10_000
    blob_store.put(digest_of(blob), blob)
    blob_store.put(digest_of(blob), blob)

    assert first == second  # the same reference: one content address
    assert count(blob_store) == 2
    assert blob_store.get(digest_of(blob)) == blob


async def test_with_encryption_the_stored_blob_is_ciphertext(blob_store: BlobStore) -> None:
    converter = converter_for(
        load_keyring(f"k1:{new_key()}"), PayloadRefCodec(blob_store, threshold=THRESHOLD)
    )

    [ref] = await converter.encode([big()])

    digest = ref.metadata["chorus-ref-sha256"].decode()
    stored = Payload.FromString(blob_store.get(digest) or b"")
    assert stored.metadata["encoding"] == b"binary/encrypted"
    assert stored.metadata["encryption-key-id"] == b"k1"
    assert CANARY.encode() not in stored.data
    assert await converter.decode([ref], [dict]) == [big()]


async def test_a_missing_blob_fails_with_a_typed_error_naming_the_digest(
    blob_store: BlobStore,
) -> None:
    converter = converter_for(load_keyring(None), PayloadRefCodec(blob_store, threshold=THRESHOLD))
    [ref] = await converter.encode([big()])
    digest = ref.metadata["chorus-ref-sha256"].decode()
    assert blob_store.delete(digest) and not blob_store.delete(digest)

    with pytest.raises(PayloadBlobMissing) as missing:
        await converter.decode([ref], [dict])

    assert missing.value.digest == digest
    assert f"payload blob sha256:{digest} of " in str(missing.value)
    assert f"not in the {blob_store.name!r} payload store" in str(missing.value)
    assert "CHORUS_PAYLOAD_RETENTION_DAYS" in str(missing.value)


async def test_an_altered_blob_is_refused(blob_store: BlobStore) -> None:
    converter = converter_for(load_keyring(None), PayloadRefCodec(blob_store, threshold=THRESHOLD))
    [ref] = await converter.encode([big()])
    digest = ref.metadata["chorus-ref-sha256"].decode()
    data = blob_store.get(digest) or b""
    blob_store.delete(digest)
    blob_store.put(digest, data[:-10] + b"0123456789")  # what a disk error would leave

    with pytest.raises(PayloadBlobCorrupt, match=f"sha256:{digest} is corrupt"):
        await converter.decode([ref], [dict])


def test_the_sweep_removes_only_blobs_unused_past_retention(blob_store: BlobStore) -> None:
    old, recent, read_lately = (bytes([n]) * 5000 for n in (1, 2, 3))
    for blob in (old, recent, read_lately):
        blob_store.put(digest_of(blob), blob)
    age(blob_store, digest_of(old), 31)
    age(blob_store, digest_of(recent), 29)
    age(blob_store, digest_of(read_lately), 40)
    assert blob_store.get(digest_of(read_lately)) == read_lately  # a read marks it used

    result = blob_store.sweep(sweep_cutoff(30))

    assert (result.blobs, result.bytes) == (1, 5000)
    assert blob_store.get(digest_of(old)) is None
    assert blob_store.get(digest_of(recent)) == recent
    assert blob_store.get(digest_of(read_lately)) == read_lately
    assert blob_store.sweep(sweep_cutoff(30)).blobs == 0


def test_a_blob_written_again_is_marked_used_again(blob_store: BlobStore) -> None:
    blob = b"z" * 5000
    blob_store.put(digest_of(blob), blob)
    age(blob_store, digest_of(blob), 60)
    blob_store.put(digest_of(blob), blob)  # a retried or replayed encoding

    assert blob_store.sweep(sweep_cutoff(30)).blobs == 0
    assert count(blob_store) == 1


async def test_plain_and_encrypted_payloads_pass_through_untouched() -> None:
    codec = PayloadRefCodec(threshold=THRESHOLD)  # no store at all
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b"x" * 100_000)
    assert not codec.offloading
    assert await codec.encode([plain]) == [plain]
    assert await codec.decode([plain]) == [plain]


async def test_a_process_without_a_store_refuses_a_reference_by_name(tmp_path: Path) -> None:
    [ref] = await PayloadRefCodec(FilesystemBlobStore(tmp_path), threshold=10).encode(
        [Payload(metadata={"encoding": b"json/plain"}, data=b"y" * 100)]
    )
    with pytest.raises(PayloadStoreUnavailable, match="no payload store configured"):
        await PayloadRefCodec().decode([ref])


def test_settings_choose_the_store(tmp_path: Path) -> None:
    base = {"state_dir": tmp_path, "_env_file": None}
    database = blob_store_for(Settings(**base))  # type: ignore[arg-type]
    assert isinstance(database, DatabaseBlobStore)
    database.close()
    files = blob_store_for(Settings(payload_store="filesystem", **base))  # type: ignore[arg-type]
    assert isinstance(files, FilesystemBlobStore) and files.root == tmp_path / "payloads"
    assert Settings(**base).payload_offload_bytes == 256 * 1024  # type: ignore[arg-type]


def test_a_database_without_the_table_names_the_command(tmp_path: Path) -> None:
    from store.engine import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with pytest.raises(PayloadStoreUnavailable, match="run `chorus db upgrade`"):
        DatabaseBlobStore(engine).get("0" * 64)
    engine.dispose()


def test_a_dead_writers_temporary_file_is_swept(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    blob = b"q" * 100
    store.put(digest_of(blob), blob)
    tmp = store.root / digest_of(blob)[:2] / ".tmp-abc"
    tmp.write_bytes(b"half")
    past = time.time() - 40 * 86400
    os.utime(tmp, (past, past))
    assert store.sweep(sweep_cutoff(30)).blobs == 0
    assert not tmp.exists() and store.get(digest_of(blob)) == blob
