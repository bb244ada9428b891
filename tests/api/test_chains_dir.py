"""Chain files added to or changed in the chains directory while the API runs
are served without `chorus chains sync`; a bad file is named in the 404 and
does not disturb the chains already published; many requests at once sync
once, one sync at a time.

The API of this module has a chains directory of its own (a temporary one,
holding a copy of review_reply.yaml), so the repository's `chains/` is never
written.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.server import ApiServer
from api.state import ChainsDir
from tests.api.conftest import (
    ROOT,
    Keys,
    admin,
    assert_error,
    bearer,
    run_completed,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("api_worker")


@pytest.fixture(scope="module")
def chains_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("chains")
    shutil.copy(ROOT / "chains" / "review_reply.yaml", directory)
    return directory


@pytest.fixture(scope="module")
def api_overrides(chains_dir: Path) -> dict[str, Any]:
    return {"chains_dir": chains_dir}


def chains_of(api: ApiServer) -> ChainsDir:
    return api.app.state.chorus.database.chains  # type: ignore[no-any-return]


def greet_spec(name: str, description: str = "Says hello.") -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "input_schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
        "steps": [
            {"name": "hello", "kind": "model", "model": "cheap", "prompt": "Hi {{ input.name }}."}
        ],
    }


def write_chain(directory: Path, name: str, spec: Any) -> Path:
    """Write a chain file whole (a rename), as an editor's save does."""
    path = directory / f"{name}.yaml"
    partial = directory / f".{name}.yaml.partial"
    partial.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec), encoding="utf-8")
    partial.replace(path)
    return path


def new_name() -> str:
    return f"added_{uuid.uuid4().hex[:8]}"


async def test_an_added_chain_is_served_and_runs_without_a_sync(
    http: httpx.AsyncClient, keys: Keys, chains_dir: Path
) -> None:
    name = new_name()
    missing = await http.get(f"/v1/chains/{name}", headers=admin())
    assert_error(missing, 404, "chain_not_found")

    write_chain(chains_dir, name, greet_spec(name))
    found = await http.get(f"/v1/chains/{name}", headers=admin())
    assert found.status_code == 200, found.text
    assert found.json()["version"] == 1 and found.json()["created_by"] == "chains-dir"

    other = new_name()
    write_chain(chains_dir, other, greet_spec(other))
    started = await http.post(
        "/v1/runs", json={"chain": other, "input": {"name": "Ada"}}, headers=bearer(keys.service)
    )
    assert started.status_code == 201, started.text
    run = await run_completed(http, started.json()["run_id"])
    assert run["chain"] == other


async def test_a_changed_chain_file_is_a_new_version(
    http: httpx.AsyncClient, chains_dir: Path
) -> None:
    name = new_name()
    write_chain(chains_dir, name, greet_spec(name, "first"))
    assert (await http.get(f"/v1/chains/{name}", headers=admin())).json()["version"] == 1

    write_chain(chains_dir, name, greet_spec(name, "second"))
    asked = await http.get(f"/v1/chains/{name}?version=2", headers=admin())
    assert asked.status_code == 200, asked.text
    assert asked.json()["description"] == "second"

    write_chain(chains_dir, name, greet_spec(name, "third"))

    async def latest() -> dict[str, Any] | None:
        chain = (await http.get(f"/v1/chains/{name}", headers=admin())).json()
        return chain if chain["version"] == 3 else None

    assert (await wait_for(latest, timeout_s=10))["description"] == "third"


async def test_a_bad_file_is_named_and_other_chains_still_served(
    api: ApiServer, http: httpx.AsyncClient, keys: Keys, chains_dir: Path
) -> None:
    published = new_name()
    write_chain(chains_dir, published, greet_spec(published))
    assert (await http.get(f"/v1/chains/{published}", headers=admin())).status_code == 200

    bad = write_chain(chains_dir, "broken", "name: broken\nsteps: [{kind: model}]\n")
    good = new_name()
    write_chain(chains_dir, good, greet_spec(good))
    try:
        missing = await http.get(f"/v1/chains/{good}", headers=admin())
        error = assert_error(missing, 404, "chain_not_found")
        assert "broken.yaml" in error["message"] and "bad file" in error["message"]
        assert "broken.yaml" in error["details"]["chains_dir_problem"]
        assert error["details"]["chain"] == good

        served = await http.get(f"/v1/chains/{published}", headers=admin())
        assert served.status_code == 200, served.text
        started = await http.post(
            "/v1/runs",
            json={"chain": published, "input": {"name": "Ada"}},
            headers=bearer(keys.service),
        )
        assert started.status_code == 201, started.text
        await run_completed(http, started.json()["run_id"])
        assert chains_of(api).problem is not None
    finally:
        bad.unlink()

    fixed = await http.get(f"/v1/chains/{good}", headers=admin())
    assert fixed.status_code == 200, fixed.text
    assert chains_of(api).problem is None


@pytest.fixture
def sync_calls(api: ApiServer) -> Iterator[dict[str, int]]:
    """Counts the API's chain-directory syncs and the most that ran at once."""
    chains = chains_of(api)
    real_sync = chains.sync
    counts = {"calls": 0, "running": 0, "most_at_once": 0}
    lock = threading.Lock()

    def counted() -> None:
        with lock:
            counts["calls"] += 1
            counts["running"] += 1
            counts["most_at_once"] = max(counts["most_at_once"], counts["running"])
        try:
            real_sync()
        finally:
            with lock:
                counts["running"] -= 1

    chains.sync = counted  # type: ignore[method-assign]
    yield counts
    del chains.sync


async def test_many_requests_at_once_sync_once(
    api: ApiServer,
    http: httpx.AsyncClient,
    keys: Keys,
    chains_dir: Path,
    sync_calls: dict[str, int],
) -> None:
    chains = chains_of(api)
    before = chains.generation
    name = new_name()
    write_chain(chains_dir, name, greet_spec(name))

    reads = [http.get(f"/v1/chains/{name}", headers=admin()) for _ in range(20)]
    starts = [
        http.post(
            "/v1/runs", json={"chain": name, "input": {"name": "Ada"}}, headers=bearer(keys.service)
        )
        for _ in range(10)
    ]
    answers = await asyncio.gather(*reads, *starts)
    assert [a.status_code for a in answers] == [200] * 20 + [201] * 10, [
        a.text for a in answers if a.status_code >= 300
    ]
    for started in answers[20:]:
        await run_completed(http, started.json()["run_id"])
    assert chains.generation == before + 1
    assert sync_calls["most_at_once"] == 1
    assert 1 <= sync_calls["calls"] <= 5, sync_calls
