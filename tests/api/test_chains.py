"""/v1/chains: shipped chains are published at start-up; publishing is
validated like `chorus validate`, versions count up, and equal specs are no-ops."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import yaml

from tests.api.conftest import ROOT, Keys, admin, assert_error, bearer


def chain_body(name: str, prompt: str = "Say hello to {{ input.name }}.") -> dict[str, Any]:
    return {
        "name": name,
        "description": "a test chain",
        "input_schema": {
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 1}},
            "required": ["name"],
        },
        "steps": [{"name": "hello", "kind": "model", "model": "cheap", "prompt": prompt}],
    }


async def test_shipped_chains_are_published_at_start(http: httpx.AsyncClient, keys: Keys) -> None:
    response = await http.get("/v1/chains", headers=bearer(keys.reviewer))
    assert response.status_code == 200
    names = {item["name"] for item in response.json()["items"]}
    shipped = {p.stem for p in (ROOT / "chains").glob("*.yaml") if p.stem != "models"}
    assert shipped <= names

    detail = await http.get("/v1/chains/review_reply", headers=bearer(keys.service))
    assert detail.status_code == 200
    body = detail.json()
    assert body["name"] == "review_reply" and body["created_by"] == "chains-dir"
    assert [s["kind"] for s in body["spec"]["steps"]] == ["model", "approval"]


async def test_publish_versions_count_up_and_equal_spec_is_a_no_op(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    name = f"greet_{uuid.uuid4().hex[:8]}"
    first = await http.put(f"/v1/chains/{name}", json=chain_body(name), headers=bearer(keys.admin))
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1 and first.json()["created_by"].startswith("admin-")

    same = await http.put(f"/v1/chains/{name}", json=chain_body(name), headers=admin())
    assert same.status_code == 200
    assert same.json()["version"] == 1 and same.json()["spec_hash"] == first.json()["spec_hash"]

    changed = chain_body(name, prompt="Greet {{ input.name }} warmly.")
    second = await http.put(f"/v1/chains/{name}", json=changed, headers=admin())
    assert second.status_code == 201 and second.json()["version"] == 2

    latest = await http.get(f"/v1/chains/{name}", headers=admin())
    assert latest.json()["version"] == 2
    assert latest.json()["spec"]["steps"][0]["prompt"] == "Greet {{ input.name }} warmly."
    older = await http.get(f"/v1/chains/{name}", params={"version": 1}, headers=admin())
    assert older.json()["spec"]["steps"][0]["prompt"] == "Say hello to {{ input.name }}."
    versions = await http.get(f"/v1/chains/{name}/versions", headers=admin())
    assert [v["version"] for v in versions.json()["items"]] == [1, 2]

    missing = await http.get(f"/v1/chains/{name}", params={"version": 7}, headers=admin())
    error = assert_error(missing, 404, "chain_not_found")
    assert "no version 7 (latest: 2)" in error["message"]


async def test_publish_yaml_text(http: httpx.AsyncClient) -> None:
    name = f"yaml_{uuid.uuid4().hex[:8]}"
    text = yaml.safe_dump(chain_body(name), sort_keys=False)
    statuses = []
    for content_type in ("application/yaml", "text/yaml; charset=utf-8"):
        response = await http.put(
            f"/v1/chains/{name}",
            content=text,
            headers={**admin(), "Content-Type": content_type},
        )
        statuses.append(response.status_code)
        assert response.json()["version"] == 1, response.text
    assert statuses == [201, 200]


async def test_bad_spec_is_422_with_the_path_of_each_problem(http: httpx.AsyncClient) -> None:
    name = f"bad_{uuid.uuid4().hex[:8]}"
    body = chain_body(name, prompt="Hello {{ steps.nowhere.output }}")
    body["steps"][0]["model"] = "no_such_alias"
    body["steps"].append({"name": "second", "kind": "model", "model": "cheap", "promt": "typo"})
    response = await http.put(f"/v1/chains/{name}", json=body, headers=admin())
    error = assert_error(response, 422, "invalid_chain_spec")
    paths = {problem["path"] for problem in error["details"]}
    assert {"steps[1].promt", "steps[1].prompt"} <= paths

    semantic = chain_body(name, prompt="Hello {{ steps.nowhere.output }}")
    semantic["steps"][0]["model"] = "no_such_alias"
    response = await http.put(f"/v1/chains/{name}", json=semantic, headers=admin())
    error = assert_error(response, 422, "invalid_chain_spec")
    by_path = {p["path"]: p["message"] for p in error["details"]}
    assert "no_such_alias" in by_path["steps[0].model"]
    assert "nowhere" in by_path["steps[0].prompt"]
    assert (await http.get(f"/v1/chains/{name}", headers=admin())).status_code == 404


async def test_name_must_match_the_url(http: httpx.AsyncClient) -> None:
    response = await http.put("/v1/chains/other_name", json=chain_body("greet_x"), headers=admin())
    error = assert_error(response, 422, "invalid_chain_spec")
    message = "the spec is named 'greet_x' but was sent to /v1/chains/other_name"
    assert error["details"] == [{"path": "name", "message": message}]


async def test_unparseable_bodies(http: httpx.AsyncClient) -> None:
    bad_yaml = await http.put(
        "/v1/chains/x",
        content="name: x\nsteps: [unclosed",
        headers={**admin(), "Content-Type": "application/yaml"},
    )
    error = assert_error(bad_yaml, 422, "invalid_chain_spec")
    assert error["details"][0]["path"] == "<document>"
    assert "invalid YAML" in error["details"][0]["message"]

    bad_json = await http.put(
        "/v1/chains/x", content="{not json", headers={**admin(), "Content-Type": "application/json"}
    )
    assert "invalid JSON" in assert_error(bad_json, 422, "invalid_chain_spec")["message"]

    not_a_mapping = await http.put("/v1/chains/x", json=[1, 2], headers=admin())
    assert_error(not_a_mapping, 422, "invalid_chain_spec")

    xml = await http.put(
        "/v1/chains/x", content="<chain/>", headers={**admin(), "Content-Type": "text/xml"}
    )
    assert_error(xml, 415, "unsupported_media_type")


async def test_unknown_chain_is_404_naming_it(http: httpx.AsyncClient, keys: Keys) -> None:
    response = await http.get("/v1/chains/nope_nothing", headers=bearer(keys.service))
    assert "'nope_nothing'" in assert_error(response, 404, "chain_not_found")["message"]
    assert_error(
        await http.get("/v1/chains/nope_nothing/versions", headers=admin()), 404, "chain_not_found"
    )
