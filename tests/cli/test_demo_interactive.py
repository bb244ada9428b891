"""`chorus demo --interactive`: the demo leaves its two approvals to a person,
who decides them over HTTP with the reviewer key the demo printed, as the
inbox does; the demo then finishes with its usual summary and stops what it
started."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.demo.reviewer_key import KEY_NAME_PREFIX
from cli.demo.tickets import SAMPLE_TICKETS
from cli.devstack.probes import port_open
from core.settings import Settings
from store import make_engine
from store.crud import list_api_keys
from store.engine import session_scope
from tests.cli.test_devstack import ROOT, gone, stack_env, stack_settings

EDITED = "Your refund for the boots is approved; it reaches your card within 5 days."


class DemoProcess:
    """A real `chorus demo --interactive`, its stdout read as it comes (all of
    it, so a long summary never fills the pipe)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(line.decode().rstrip("\n"))
            self.changed.set()
        self.changed.set()

    @property
    def out(self) -> str:
        return "\n".join(self.lines)

    async def line_after(self, text: str, offset: int = 0) -> str:
        """The line `offset` lines after the first one containing `text`."""
        async with asyncio.timeout(90):
            while True:
                found = [i for i, line in enumerate(self.lines) if text in line]
                if found and len(self.lines) > found[0] + offset:
                    return self.lines[found[0] + offset]
                assert not self.reader.done(), f"the demo ended without {text!r}:\n{self.out}"
                self.changed.clear()
                await self.changed.wait()


async def pending_demo_approvals(http: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(60):
        while True:
            response = await http.get("/v1/approvals", params={"status": "pending"})
            assert response.status_code == 200, response.text
            items = [i for i in response.json()["items"] if i["run_id"].startswith("demo-")]
            if len(items) >= count:
                return items  # type: ignore[no-any-return]
            await asyncio.sleep(0.2)


async def start_interactive_demo(settings: Settings) -> DemoProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "demo", "--interactive",
        cwd=ROOT, env=stack_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        # A shell's background job inherits an ignored SIGINT: restore Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    return DemoProcess(proc)


def key_row(settings: Settings, name: str) -> Any:
    engine = make_engine(settings.effective_database_url)
    try:
        with session_scope(engine) as session:
            [row] = [k for k in list_api_keys(session) if k.name == name]
            return row
    finally:
        engine.dispose()


@pytest.mark.slow
async def test_interactive_demo_waits_for_a_person_to_decide_in_the_inbox(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    demo = await start_interactive_demo(settings)
    proc = demo.proc
    try:
        inbox = (await demo.line_after("inbox: ")).split("inbox: ", 1)[1].strip()
        assert inbox == f"http://127.0.0.1:{settings.api_port}/inbox"
        named = await demo.line_after("to sign in with")
        name = named.split("reviewer key ", 1)[1].split()[0]
        assert name.startswith(KEY_NAME_PREFIX)
        key = (await demo.line_after("to sign in with", 1)).strip()
        await demo.line_after("yours to decide in the inbox")
        pids = {int(f.read_text()) for f in (tmp_path / "state" / "run").glob("*.pid")}

        api = inbox.removesuffix("/inbox")
        async with httpx.AsyncClient(
            base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            items = await pending_demo_approvals(http, 2)
            assert len(items) == 2, items  # the refund and the low-confidence ticket
            by_ticket = {i["context"]["ticket"]: i for i in items}
            refund_ticket = next(t for t in SAMPLE_TICKETS if t.id == "boots-refund")
            refund = by_ticket.pop(refund_ticket.message)
            [other] = by_ticket.values()
            for item, body in (
                (refund, {"decision": "edit", "edited_output": EDITED}),
                (other, {"decision": "approve"}),
            ):
                answer = await http.post(
                    f"/v1/runs/{item['run_id']}/approvals/{item['approval_id']}",
                    json={**body, "payload_hash": item["payload_hash"]},
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["reviewer"] == name

        code = await asyncio.wait_for(proc.wait(), 90)
        await demo.reader
        err = (await proc.stderr.read()).decode() if proc.stderr else ""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        demo.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await demo.reader

    out = demo.out
    assert code == 0, out + err
    assert "⏸ boots-refund waits for approval review" in out
    assert f"✓ boots-refund completed; review edit by {name}" in out
    assert f"✓ not-what-i-expected completed; review approve by {name}" in out
    assert "(5 of 5 runs finished)" in out
    assert f"2 approvals decided in the inbox by {name}." in out
    assert EDITED in out  # the summary shows the edited reply
    assert "Routing saved" in out

    # The key went with the demo, and so did every process it started.
    row = key_row(settings, name)
    assert row.revoked_at is not None and row.role == "reviewer"
    assert len(pids) == 4 and all(gone(pid) for pid in pids), pids  # API included
    assert list((tmp_path / "state" / "run").glob("*.pid")) == []
    for port in (settings.temporal_port, settings.simulator_port, settings.api_port):
        assert not await port_open("127.0.0.1", port), port


@pytest.mark.slow
async def test_ctrl_c_while_the_interactive_demo_waits_stops_it_all_and_revokes_the_key(
    tmp_path: Path,
) -> None:
    settings = stack_settings(tmp_path / "state")
    demo = await start_interactive_demo(settings)
    proc = demo.proc
    try:
        named = await demo.line_after("to sign in with")
        name = named.split("reviewer key ", 1)[1].split()[0]
        await demo.line_after("waits for approval review")
        pids = {int(f.read_text()) for f in (tmp_path / "state" / "run").glob("*.pid")}
        assert key_row(settings, name).revoked_at is None
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
        await demo.reader
        err = (await proc.stderr.read()).decode() if proc.stderr else ""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        demo.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await demo.reader

    assert code == 130, demo.out + err
    assert "interrupted: stopped what the demo started" in err
    assert key_row(settings, name).revoked_at is not None
    assert len(pids) == 4 and all(gone(pid) for pid in pids), pids
    for port in (settings.temporal_port, settings.simulator_port, settings.api_port):
        assert not await port_open("127.0.0.1", port), port
