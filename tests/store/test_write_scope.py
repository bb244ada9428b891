"""Writes under concurrency: `write_scope` on SQLite, and a pool sized by the caller."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from store.engine import WriteLockTimeout, make_engine, write_scope


@pytest.fixture
def counter_db(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one SQLite file (the API's and an in-process worker's),
    with a one-row counter table."""
    url = f"sqlite:///{tmp_path / 'chorus.db'}"
    with ExitStack() as stack:
        engines = (make_engine(url), make_engine(url))
        for engine in engines:
            stack.callback(engine.dispose)
        with engines[0].begin() as conn:
            conn.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
            conn.execute(text("INSERT INTO counter VALUES (0)"))
        yield engines


def test_read_then_write_transactions_take_turns_and_lose_nothing(
    counter_db: tuple[Engine, Engine],
) -> None:
    """32 threads over two engines each read the counter and write it plus one,
    ten times: every increment lands (no lost update, so each transaction's
    read was not stale when it wrote) and none meets "database is locked"."""

    def increment(i: int) -> None:
        engine = counter_db[i % 2]
        for _ in range(10):
            with write_scope(engine) as session:
                n = session.exec(text("SELECT n FROM counter")).scalar_one()  # type: ignore[call-overload]
                session.exec(text("UPDATE counter SET n = :n"), params={"n": n + 1})  # type: ignore[call-overload]

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(increment, range(32)))  # re-raises any thread's error

    with counter_db[0].connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 320


def test_a_block_that_raises_writes_nothing(counter_db: tuple[Engine, Engine]) -> None:
    with pytest.raises(RuntimeError), write_scope(counter_db[0]) as session:
        session.exec(text("UPDATE counter SET n = 99"))  # type: ignore[call-overload]
        raise RuntimeError("boom")
    with counter_db[1].connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 0


def test_a_writer_that_cannot_get_its_turn_gives_up(counter_db: tuple[Engine, Engine]) -> None:
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write_scope(counter_db[0]) as session:
            session.exec(text("UPDATE counter SET n = 1"))  # type: ignore[call-overload]
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        # The other engine on the same file waits for the same turn.
        with pytest.raises(WriteLockTimeout), write_scope(counter_db[1], lock_timeout_s=0.2):
            pass
    finally:
        release.set()
        holder.join()
    with write_scope(counter_db[1], lock_timeout_s=5) as session:
        assert session.exec(text("SELECT n FROM counter")).scalar_one() == 1  # type: ignore[call-overload]


def test_the_pool_is_sized_by_the_caller_and_a_checkout_waits_a_bounded_time(
    tmp_path: Path,
) -> None:
    engine = make_engine(
        f"sqlite:///{tmp_path / 'chorus.db'}", pool_size=2, max_overflow=1, pool_timeout_s=0.2
    )
    try:
        with ExitStack() as held:
            for _ in range(3):
                held.enter_context(engine.connect())
            with pytest.raises(PoolTimeout):
                engine.connect()
    finally:
        engine.dispose()
