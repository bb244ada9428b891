"""The call log knows when a completed call's reply was sent, and an
in-process listener hears of it at that instant (bench/kill_window.py)."""

from __future__ import annotations

import threading

import httpx

from simulator.models import CallRecord, Fault
from simulator.server import SimulatorServer
from simulator.state import SimulatorState


async def test_a_sent_reply_is_stamped_and_heard_and_a_fault_is_not() -> None:
    heard: list[tuple[str | None, str]] = []
    async with SimulatorServer() as server:
        state: SimulatorState = server.app.state.sim_state

        def listener(record: CallRecord) -> None:
            heard.append((record.request_id, threading.current_thread().name))

        state.reply_listeners.append(listener)
        state.add_faults([Fault(kind="status", status=503, request_id_prefix="r-fault")])
        async with httpx.AsyncClient(base_url=server.openai_base_url) as client:
            for request_id in ("r-ok", "r-fault"):
                await client.post(
                    "/chat/completions",
                    headers={"X-Chorus-Request-Id": request_id},
                    json={"model": "sim-mini", "messages": [{"role": "user", "content": "hi"}]},
                )
        ok, fault = state.calls()

    assert heard == [("r-ok", server.thread_name)]
    assert ok.outcome == "completed" and ok.sent_at is not None
    assert ok.finished_at is not None and ok.sent_at >= ok.finished_at
    assert fault.outcome == "fault" and fault.sent_at is None
