"""Encrypted payloads end to end: a real dev server, a real worker and the
simulator. History holds only ciphertext; the codec server (real uvicorn)
decodes it for the Temporal CLI; search attributes stay readable; a key
rotation keeps an old run readable; a worker without the key fails its
workflow task with a message naming the key, and the run resumes once a
worker with the key takes it."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.codec_server import CodecServer
from cli.devstack.temporal_server import find_temporal_binary
from core.converter import converter_for
from core.encryption import PayloadKeyUnavailable, load_keyring, new_key
from core.settings import Settings
from runs.client import RunClient
from simulator.control import SimulatorControl
from simulator.models import Rule
from tests.conftest import activity_host
from tests.integration.conftest import shipped_chain
from tests.integration.test_approvals import decide, wait_pending
from worker.assembly import hosted_worker
from worker.plugin import chorus_replayer

KEY_A, KEY_B = new_key(), new_key()
TOKEN = "codec-token-for-tests-0123456789"
ENCRYPTED = base64.b64encode(b"binary/encrypted").decode()


def canary() -> str:
    return f"canary-{uuid.uuid4().hex[:12]} my tent pole snapped"


def keyed_client(env: WorkflowEnvironment, keys: str | None) -> Client:
    """The session server, through the converter a process with `keys` builds."""
    converter = converter_for(load_keyring(keys))
    return Client(**{**env.client.config(), "data_converter": converter})


async def temporal_cli(env: WorkflowEnvironment, *args: str) -> str:
    address = env.client.service_client.config.target_host
    proc = await asyncio.create_subprocess_exec(
        find_temporal_binary(), *args, "--address", address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def raw_history(env: WorkflowEnvironment, workflow_id: str, *codec: str) -> str:
    return await temporal_cli(
        env, "workflow", "show", "--workflow-id", workflow_id, "--output", "json", *codec
    )


def payloads(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every payload of a history in the CLI's JSON, with where it is."""
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            yield path, node
            return
        for key, value in node.items():
            yield from payloads(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from payloads(value, f"{path}[{index}]")


def plain_by_design(path: str) -> bool:
    """Search attributes (visibility must read them) and the SDK core's own
    marker bookkeeping (a patch id; a local activity's id, type and times,
    its result being encrypted) are not payloads the codec sees."""
    return "searchAttributes" in path or any(
        f"markerRecordedEventAttributes.details.{key}." in path for key in ("patch-data", "data")
    )


def key_ids(history: str) -> set[str]:
    found = set()
    for path, payload in payloads(json.loads(history)):
        if not plain_by_design(path):
            key = payload["metadata"].get("encryption-key-id")
            found.add(base64.b64decode(key).decode() if key else "<plain>")
    return found


async def test_history_holds_only_ciphertext_and_the_codec_server_decodes_it(
    temporal_env: WorkflowEnvironment,
    registry: Any,
    store_engine: Any,
    task_queue: str,
    sim: SimulatorControl,
) -> None:
    text = canary()
    await sim.add_rules(
        Rule(model="sim-mini", match=text, json={"complexity": "simple", "topic": "gear"}, times=1)
    )
    client = keyed_client(temporal_env, f"a:{KEY_A}")
    spec = shipped_chain("classify_then_answer", registry)
    async with hosted_worker(client, activity_host(registry, store_engine), task_queue=task_queue):
        started = await RunClient(client, task_queue=task_queue).start(
            spec, {"question": text}, run_id=f"enc-{uuid.uuid4()}"
        )
        result = await started.handle.result()
    assert result.status == "completed"

    history = await raw_history(temporal_env, started.handle.id)

    assert text not in history
    found = list(payloads(json.loads(history)))
    assert len(found) > 5
    for path, payload in found:
        if plain_by_design(path):
            assert text not in base64.b64decode(payload["data"]).decode()
            continue
        assert payload["metadata"]["encoding"] == ENCRYPTED, path
        assert text.encode() not in base64.b64decode(payload["data"]), path
    assert key_ids(history) == {"a"}

    # Search attributes stay readable to visibility queries.
    query = (
        f"WorkflowId='{started.handle.id}' AND ChorusChain='classify_then_answer' "
        "AND ChorusStatus='completed'"
    )
    for _ in range(50):
        listed = await temporal_cli(
            temporal_env, "workflow", "list", "--output", "json", "--query", query
        )
        if started.handle.id in listed:
            break
        await asyncio.sleep(0.1)
    assert started.handle.id in listed

    # The codec server decodes it, for the Temporal CLI and over plain HTTP.
    settings = Settings(encryption_keys=SecretStr(f"a:{KEY_A}"), codec_auth_token=TOKEN)
    async with CodecServer(settings) as codec:
        decoded = await raw_history(
            temporal_env, started.handle.id,
            "--codec-endpoint", codec.url, "--codec-auth", f"Bearer {TOKEN}",
        )  # fmt: skip
        assert key_ids(decoded) == {"<plain>"}
        assert any(
            text.encode() in base64.b64decode(p["data"]) for _, p in payloads(json.loads(decoded))
        )
        started_event = json.loads(history)["events"][0]["workflowExecutionStartedEventAttributes"]
        body = {"payloads": started_event["input"]["payloads"][:1]}
        async with httpx.AsyncClient(base_url=codec.url) as http:
            headers = {"X-Namespace": "default", "Origin": "http://localhost:8233"}
            refused = await http.post("/decode", json=body, headers=headers)
            wrong = await http.post(
                "/decode", json=body, headers={**headers, "Authorization": "Bearer nope"}
            )
            answered = await http.post(
                "/decode", json=body, headers={**headers, "Authorization": f"Bearer {TOKEN}"}
            )
    assert refused.status_code == 401 and wrong.status_code == 403
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == "http://localhost:8233"
    [plain] = answered.json()["payloads"]
    assert base64.b64decode(plain["metadata"]["encoding"]) == b"json/plain"
    assert text in base64.b64decode(plain["data"]).decode()

    # The Replayer built from the settings reads it back (and without the key, it cannot).
    from temporalio.client import WorkflowHistory

    recorded = WorkflowHistory.from_json(started.handle.id, history)
    replayed = await chorus_replayer(settings).replay_workflow(recorded)
    assert replayed.replay_failure is None


async def test_rotation_keeps_an_old_run_readable_and_writes_with_the_new_key(
    temporal_env: WorkflowEnvironment,
    registry: Any,
    store_engine: Any,
    task_queue: str,
    sim: SimulatorControl,
) -> None:
    text = canary()
    await sim.add_rules(Rule(model="sim-writer", reply=f"Draft: {text}"))
    spec = shipped_chain("review_reply", registry)
    under_a = keyed_client(temporal_env, f"a:{KEY_A}")
    async with hosted_worker(under_a, activity_host(registry, store_engine), task_queue=task_queue):
        started = await RunClient(under_a, task_queue=task_queue).start(
            spec, {"message": text}, run_id=f"enc-rot-{uuid.uuid4()}"
        )
        [approval] = await wait_pending(started.handle)
    assert key_ids(await raw_history(temporal_env, started.handle.id)) == {"a"}

    # The worker restarts with [b active, a]: it replays a's history, writes with b.
    rotated = keyed_client(temporal_env, f"b:{KEY_B},a:{KEY_A}")
    handle: WorkflowHandle[Any, Any] = rotated.get_workflow_handle(started.handle.id)
    async with hosted_worker(rotated, activity_host(registry, store_engine), task_queue=task_queue):
        await decide(handle, approval)
        result = await handle.result()

    assert result["status"] == "completed" and text in result["output"]
    assert key_ids(await raw_history(temporal_env, started.handle.id)) == {"a", "b"}
    # the result is under b; the input stays under a, which a process must keep
    only_b = keyed_client(temporal_env, f"b:{KEY_B}")
    assert (await only_b.get_workflow_handle(started.handle.id).result())["status"] == "completed"
    history = await only_b.get_workflow_handle(started.handle.id).fetch_history()
    started_input = history.events[0].workflow_execution_started_event_attributes.input
    with pytest.raises(PayloadKeyUnavailable, match=r"'a'.*CHORUS_ENCRYPTION_KEYS"):
        await only_b.data_converter.decode(started_input.payloads)


async def test_a_worker_without_the_key_fails_its_task_by_name_then_a_keyed_one_resumes(
    temporal_env: WorkflowEnvironment,
    registry: Any,
    store_engine: Any,
    task_queue: str,
    sim: SimulatorControl,
) -> None:
    text = canary()
    await sim.add_rules(
        Rule(model="sim-mini", match=text, json={"complexity": "simple", "topic": "gear"}, times=1)
    )
    keyed = keyed_client(temporal_env, f"prod-7:{KEY_A}")
    started = await RunClient(keyed, task_queue=task_queue).start(
        shipped_chain("classify_then_answer", registry),
        {"question": text},
        run_id=f"enc-nokey-{uuid.uuid4()}",
    )

    keyless = keyed_client(temporal_env, None)
    async with hosted_worker(keyless, activity_host(registry, store_engine), task_queue=task_queue):
        failure = await asyncio.wait_for(first_task_failure(keyed, started.handle.id), 30)
    assert "payload is encrypted with key 'prod-7'" in failure
    assert "this process has no encryption keys" in failure
    assert "CHORUS_ENCRYPTION_KEYS" in failure
    assert KEY_A not in failure

    async with hosted_worker(keyed, activity_host(registry, store_engine), task_queue=task_queue):
        result = await asyncio.wait_for(started.handle.result(), 60)
    assert result.status == "completed"


async def first_task_failure(client: Client, workflow_id: str) -> str:
    while True:
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                return event.workflow_task_failed_event_attributes.failure.message
        await asyncio.sleep(0.1)
