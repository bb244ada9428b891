"""Chain versions: numbering, same-spec no-ops, lookups, the chains directory."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine
from sqlmodel import Session

from activities.gateway.registry import ModelRegistry
from core.chain_spec import ChainSpec
from runs.catalog import ChainFileError, sync_chain_dir
from store.crud import (
    get_chain_version,
    hash_json,
    list_chain_versions,
    list_chains,
    publish_chain,
    publish_chain_version,
    spec_hash,
)
from store.engine import session_scope
from tests.store.conftest import make_spec

ROOT = Path(__file__).resolve().parents[2]
CHAINS_DIR = ROOT / "chains"


@pytest.fixture(scope="module")
def known_aliases() -> list[str]:
    registry = ModelRegistry.from_file(
        CHAINS_DIR / "models.yaml", simulator_base_url="http://127.0.0.1:9/v1"
    )
    return registry.aliases


def shipped_chain_names() -> set[str]:
    return {
        yaml.safe_load(path.read_text())["name"]
        for path in CHAINS_DIR.glob("*.yaml")
        if path.name != "models.yaml"
    }


def test_hash_json_is_canonical() -> None:
    assert hash_json({"b": 1, "a": [1, 2]}) == hash_json({"a": [1, 2], "b": 1})
    assert hash_json({"a": 1}) != hash_json({"a": 2})
    # sha256 of the compact, key-sorted UTF-8 text
    expected = hashlib.sha256('{"a":"é","b":1}'.encode()).hexdigest()
    assert hash_json({"b": 1, "a": "é"}) == expected


def test_versions_count_up_and_the_stored_spec_carries_its_version(session: Session) -> None:
    first = publish_chain_version(session, spec=make_spec(), created_by="alice")
    second = publish_chain_version(
        session, spec=make_spec(prompt="Hi {{ input.name }}"), created_by="bob"
    )
    session.commit()

    assert (first.version, second.version) == (1, 2)
    assert first.spec["version"] == 1 and second.spec["version"] == 2
    assert second.to_spec().steps[0].prompt == "Hi {{ input.name }}"  # type: ignore[union-attr]
    assert second.created_by == "bob"
    assert second.description == "test chain greet"
    assert second.spec_hash == spec_hash(make_spec(prompt="Hi {{ input.name }}"))
    assert second.created_at.tzinfo is not None


def test_publishing_the_same_spec_again_is_a_no_op(session: Session) -> None:
    first = publish_chain(session, spec=make_spec(), created_by="alice")
    # The version number a file carries does not make it a different spec.
    again = publish_chain(
        session, spec=make_spec().model_copy(update={"version": 7}), created_by="bob"
    )
    session.commit()

    assert first.created and not again.created
    assert again.chain_version.id == first.chain_version.id
    assert again.chain_version.version == 1
    assert len(list_chain_versions(session, name="greet")) == 1


def test_an_old_spec_republished_becomes_the_newest_version(session: Session) -> None:
    publish_chain_version(session, spec=make_spec(), created_by="a")
    publish_chain_version(session, spec=make_spec(prompt="v2 {{ input.name }}"), created_by="a")
    back = publish_chain_version(session, spec=make_spec(), created_by="a")
    assert back.version == 3


def test_lookups(session: Session) -> None:
    publish_chain_version(session, spec=make_spec(), created_by="a")
    publish_chain_version(session, spec=make_spec(prompt="v2 {{ input.name }}"), created_by="a")
    publish_chain_version(session, spec=make_spec("other"), created_by="a")
    session.commit()

    latest = get_chain_version(session, name="greet")
    assert latest is not None and latest.version == 2
    one = get_chain_version(session, name="greet", version=1)
    assert one is not None and one.version == 1
    assert get_chain_version(session, name="greet", version=3) is None
    assert get_chain_version(session, name="missing") is None
    assert [v.version for v in list_chain_versions(session, name="greet")] == [1, 2]
    assert [(c.name, c.version) for c in list_chains(session)] == [("greet", 2), ("other", 1)]
    assert list_chain_versions(session, name="missing") == []


def test_sync_chain_dir_publishes_the_shipped_chains_once(
    session: Session, known_aliases: list[str]
) -> None:
    published = sync_chain_dir(session, chains_dir=CHAINS_DIR, known_aliases=known_aliases)
    session.commit()
    assert {row.name for row in published} == shipped_chain_names()
    assert all(row.version == 1 and row.created_by == "chains-dir" for row in published)
    for row in published:
        assert isinstance(row.to_spec(), ChainSpec)

    again = sync_chain_dir(session, chains_dir=CHAINS_DIR, known_aliases=known_aliases)
    assert [row.id for row in again] == [row.id for row in published]
    assert len(list_chains(session)) == len(published)


def test_sync_chain_dir_publishes_nothing_when_one_file_is_bad(
    session: Session, tmp_path: Path, known_aliases: list[str]
) -> None:
    good = make_spec("good").model_dump(mode="json")
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    bad = make_spec("bad").model_dump(mode="json")
    bad["steps"][0]["model"] = "no_such_model"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))

    with pytest.raises(
        ChainFileError,
        match=r"(?s)bad\.yaml.*steps\[0\]\.model: unknown model alias 'no_such_model'",
    ):
        sync_chain_dir(session, chains_dir=tmp_path, known_aliases=known_aliases)
    assert list_chains(session) == []


def test_sync_chain_dir_refuses_two_files_for_one_chain(
    session: Session, tmp_path: Path, known_aliases: list[str]
) -> None:
    for stem in ("a", "b"):
        (tmp_path / f"{stem}.yaml").write_text(
            yaml.safe_dump(make_spec("same").model_dump(mode="json"))
        )
    with pytest.raises(ChainFileError, match="several files define the chain"):
        sync_chain_dir(session, chains_dir=tmp_path, known_aliases=known_aliases)


def test_concurrent_publishes_get_distinct_versions_or_share_one(engine: Engine) -> None:
    writers = 4
    barrier = threading.Barrier(writers)

    def publish(prompt: str) -> int:
        barrier.wait()
        with session_scope(engine) as session:
            return publish_chain_version(
                session, spec=make_spec(prompt=prompt), created_by="t"
            ).version

    with ThreadPoolExecutor(writers) as pool:
        distinct = list(pool.map(publish, [f"p{i} {{{{ input.name }}}}" for i in range(writers)]))
    assert sorted(distinct) == [1, 2, 3, 4]

    with ThreadPoolExecutor(writers) as pool:
        same = list(pool.map(publish, ["same {{ input.name }}"] * writers))
    assert same == [5] * writers
    with session_scope(engine) as session:
        assert len(list_chain_versions(session, name="greet")) == 5
