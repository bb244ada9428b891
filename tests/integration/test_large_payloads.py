"""Large payloads by reference end to end, on the session's dev server: a
run whose retrieval returns 5 MB of context and an agent whose conversation
grows past 3 MB (continuing as new with it) complete, and no payload in
their histories, fetched raw and measured one by one, reaches the offload
threshold; the Replayer reads the references back.

Stub activities under the real names (tests/workflows/stubs.py) make the
big payloads without a simulator: a retrieve that answers 50 passages of
100 KB, a model that answers 350 KB and calls a tool every turn. The
references go to the database store on the session's SQLite database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.message import Message
from sqlalchemy import Engine, select
from sqlmodel import Session
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from activities.gateway.types import ModelCallInput, ModelCallResult, ToolCall
from activities.retrieval.types import RetrieveInput, RetrieveResult
from core.converter import converter_for
from core.encryption import Keyring
from core.names import CALL_MODEL, RETRIEVE
from core.passages import Passage
from core.payload_refs import DEFAULT_OFFLOAD_BYTES, PayloadRefCodec, is_reference
from core.settings import Settings
from runs.client import RunClient
from store.payload_blobs import DatabaseBlobStore, PayloadBlob
from tests.workflows.stubs import CHEAP, RETRY, USAGE, Stubs
from worker.assembly import create_worker
from worker.plugin import chorus_replayer
from workflows.validate import parse_chain

PASSAGE_CHARS = 100_000
PASSAGES = 50
"""50 passages of 100 KB: 5 MB of retrieved context."""
REPLY_CHARS = 350_000
AGENT_TURNS = 10
"""Nine replies of 350 KB and their tool results: a conversation past 3 MB."""
RUN_TIMEOUT_S = 60.0


class BigStubs(Stubs):
    """The stub activities, with a retrieval and a model that answer big."""

    @property
    def activities(self) -> list[Any]:
        replaced = {CALL_MODEL: self.big_call_model, RETRIEVE: self.big_retrieve}
        return [
            replaced.get(getattr(a, "__temporal_activity_definition").name, a)
            for a in super().activities
        ]

    @activity.defn(name=RETRIEVE)
    async def big_retrieve(self, inp: RetrieveInput) -> RetrieveResult:
        self.retrievals.append(inp)
        passages = [
            Passage(
                id=f"manual.md#{n}",
                document="manual.md",
                source="docs/manual.md",
                position=n,
                text=f"passage {n}: " + "lorem ipsum " * (PASSAGE_CHARS // 12),
                score=1.0 - n / 100,
            )
            for n in range(inp.top_k)
        ]
        return RetrieveResult(
            collection=inp.collection, query=inp.query, ranking="fts", passages=passages
        )

    @activity.defn(name=CALL_MODEL)
    async def big_call_model(self, inp: ModelCallInput) -> ModelCallResult:
        self.model_calls.append(inp)
        turn = sum(1 for m in inp.messages if m.role == "assistant") + 1
        if inp.tools and turn < AGENT_TURNS:
            text = f"turn {turn}: " + "thinking out loud " * (REPLY_CHARS // 18)
            calls = [ToolCall(id=f"call-{turn}", name="lookup_order", arguments={"order_id": "A"})]
        else:
            text, calls = f"answer after {turn} turns, prompt of {len(inp.messages)} messages", []
        return ModelCallResult(
            alias=inp.alias,
            provider="stub",
            model=f"stub-{inp.alias}",
            text=text,
            tool_calls=calls,
            usage=USAGE,
            cost_usd=CHEAP.cost(USAGE),
            latency_ms=1.0,
        )


@dataclass
class Offloading:
    client: Client
    runs: RunClient
    stubs: BigStubs
    store: DatabaseBlobStore


@pytest.fixture
async def offloading(
    temporal_env: WorkflowEnvironment, task_queue: str, store_engine: Engine
) -> AsyncIterator[Offloading]:
    """A client (and its worker) whose converter offloads payloads over the
    default threshold to the database store."""
    store = DatabaseBlobStore(store_engine)
    converter = converter_for(Keyring(), PayloadRefCodec(store, threshold=DEFAULT_OFFLOAD_BYTES))
    client = Client(**{**temporal_env.client.config(), "data_converter": converter})
    stubs = BigStubs()
    async with create_worker(client, task_queue=task_queue, activities=stubs.activities):
        yield Offloading(client, RunClient(client, task_queue=task_queue), stubs, store)


def payloads_of(message: Message) -> Iterator[Payload]:
    """Every Payload in a protobuf message, at any depth (maps included)."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        else:
            items = [value] if isinstance(value, Message) else list(value)
        for item in items:
            yield from payloads_of(item)


async def histories(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The raw histories (payloads as stored) of every run of `workflow_id`,
    continued-as-new ones included."""
    found = [
        await client.get_workflow_handle(workflow_id, run_id=execution.run_id).fetch_history()
        async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'")
    ]
    assert found, f"no history for {workflow_id}"
    return found


def measure(found: list[WorkflowHistory]) -> tuple[int, int, int]:
    """(payloads, references, largest payload in bytes) over `found`."""
    every = [p for history in found for e in history.events for p in payloads_of(e)]
    return len(every), sum(1 for p in every if is_reference(p)), max(p.ByteSize() for p in every)


def largest_blob(engine: Engine, since: set[str]) -> int:
    with Session(engine) as session:
        rows = session.execute(select(PayloadBlob.digest, PayloadBlob.size)).all()
    return max((size for digest, size in rows if digest not in since), default=0)


def digests(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.execute(select(PayloadBlob.digest)).scalars())


async def visible(client: Client, workflow_id: str, runs: int = 1) -> None:
    """Wait for visibility to list `runs` executions of `workflow_id`."""
    async with asyncio.timeout(10):
        while True:
            n = 0
            async for _ in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
                n += 1
            if n >= runs:
                return
            await asyncio.sleep(0.1)


async def test_a_run_retrieving_5_mb_of_context_completes_with_small_payloads(
    offloading: Offloading, store_engine: Engine
) -> None:
    before = digests(store_engine)
    retrieve = {"name": "context", "kind": "retrieve", "collection": "manual", "query": "all"}
    answer = {"name": "answer", "kind": "model", "model": "cheap", "max_tokens": 50}
    answer["prompt"] = "Answer from: {{ steps.context.output.passages[0].text }}"
    steps = [{**retrieve, "top_k": PASSAGES}, answer]
    spec = parse_chain({"name": "big_context", "defaults": RETRY, "steps": steps})
    started = await offloading.runs.start(spec, {"q": "everything"}, run_id=f"big-{uuid.uuid4()}")
    result = await asyncio.wait_for(started.handle.result(), RUN_TIMEOUT_S)

    passages = result.steps["context"].output["passages"]
    assert len(passages) == PASSAGES
    assert sum(len(p["text"]) for p in passages) >= 5_000_000
    assert result.output.startswith("answer after")
    await visible(offloading.client, started.run_id)
    count, refs, largest = measure(await histories(offloading.client, started.run_id))
    blob = largest_blob(store_engine, before)
    print(f"\n5 MB retrieval: {count} payloads, {refs} references, largest {largest} B")
    print(f"in history; largest offloaded payload {blob} B")
    assert largest < DEFAULT_OFFLOAD_BYTES
    assert refs >= 2  # the retrieval's result and the run's result
    assert blob > 5_000_000

    # What a Replayer (the recorded-history tests') reads: the same references.
    settings = Settings(
        database_url=str(store_engine.url),
        _env_file=None,  # type: ignore[call-arg]
    )
    [history] = await histories(offloading.client, started.run_id)
    await chorus_replayer(settings).replay_workflow(history)


async def test_an_agent_whose_conversation_passes_3_mb_completes_with_small_payloads(
    offloading: Offloading, store_engine: Engine
) -> None:
    before = digests(store_engine)
    agent = {"name": "helper", "kind": "agent", "model": "cheap", "prompt": "Help"}
    agent |= {"tools": ["lookup_order"], "max_turns": AGENT_TURNS + 2}
    # Continue as new every few turns: the conversation rides in its input.
    agent["history_event_limit"] = 50
    spec = parse_chain({"name": "big_agent", "defaults": RETRY, "steps": [agent]})
    run_id = f"agent-{uuid.uuid4()}"
    started = await offloading.runs.start(spec, {}, run_id=run_id)
    result = await asyncio.wait_for(started.handle.result(), RUN_TIMEOUT_S)

    output = result.output
    assert output["stopped"] == "answered" and output["turns"] == AGENT_TURNS
    assert output["continued_as_new"] >= 1
    last_prompt = offloading.stubs.model_calls[-1].messages
    conversation = sum(len(m.content or "") for m in last_prompt)
    assert conversation > 3_000_000, conversation

    child = f"{run_id}--helper"
    await visible(offloading.client, child, runs=output["continued_as_new"] + 1)
    found = await histories(offloading.client, run_id) + await histories(offloading.client, child)
    count, refs, largest = measure(found)
    blob = largest_blob(store_engine, before)
    print(f"\n3 MB agent ({len(found)} histories): {count} payloads, {refs} references")
    print(f"largest {largest} B in history; largest offloaded payload {blob} B")
    assert largest < DEFAULT_OFFLOAD_BYTES
    assert blob > 3_000_000
