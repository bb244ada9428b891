"""The embedded dev stack: real Temporal dev server, simulator and worker
processes on free ports in a temporary state directory."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import WorkflowExecutionStatus

from cli.devstack.errors import DevStackError
from cli.devstack.stack import DevStack
from core.settings import Settings
from runs.catalog import load_chain
from runs.client import RunClient

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "devstack-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_settings(state_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "temporal_address": f"127.0.0.1:{free_port()}",
        "temporal_ui_port": free_port(),
        "simulator_port": free_port(),
        "api_port": free_port(),
        # Its own metrics ports: stacks started at once by tests on other
        # xdist workers would otherwise both see 9464 free, and the second
        # worker to bind it would exit.
        "metrics_port": free_port(),
        "admin_key": ADMIN_KEY,
        "state_dir": state_dir,
        "models_file": ROOT / "chains" / "models.yaml",
        "chains_dir": ROOT / "chains",
        "task_queue": f"devstack-{uuid.uuid4()}",
        "log_format": "json",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def stack_env(settings: Settings) -> dict[str, str]:
    """The environment of a `chorus` child reading exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHORUS_")}
    env.pop("DATABASE_URL", None)
    env.update(settings.to_env())
    env["COLUMNS"] = "400"  # rich wraps at 80 columns when stdout is a pipe
    return env


class DevProcess:
    """A real `chorus dev` process, its output read as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out = ""
        self.err = ""

    @classmethod
    async def start(cls, settings: Settings) -> DevProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "dev",
            cwd=ROOT, env=stack_env(settings),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            # A shell's background job inherits an ignored SIGINT: restore Ctrl-C.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        return cls(proc)

    async def wait_for(self, text: str) -> str:
        """Read stdout until `text` appears; all of stdout so far."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            while text not in self.out:
                line = await self.proc.stdout.readline()
                if not line:
                    rest = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(
                        f"chorus dev ended without printing {text!r}:\n{self.out}\n{rest.decode()}"
                    )
                self.out += line.decode()
        return self.out

    async def finish(self) -> int:
        """Wait for the exit code, reading the rest of its output."""
        out, err = await asyncio.wait_for(self.proc.communicate(), 60)
        self.out += out.decode()
        self.err += err.decode()
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
async def foreign_listener() -> AsyncIterator[int]:
    """A TCP server that accepts connections and speaks no gRPC."""

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.slow
async def test_stack_starts_runs_a_chain_stops_and_keeps_state(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    stack = DevStack(settings, startup_timeout=60)
    await stack.start()
    try:
        assert set(stack.started) == {"temporal", "simulator", "worker", "api"}
        assert stack.is_running
        assert await stack.check() == {
            "temporal": True,
            "simulator": True,
            "worker": True,
            "api": True,
        }

        client = await stack.client()
        attributes = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=settings.temporal_namespace)
        )
        assert dict(attributes.custom_attributes) == {
            "ChorusChain": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
            "ChorusStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
            "ChorusCostUsd": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
        }
        async with httpx.AsyncClient() as http:
            models = await http.get(f"{settings.simulator_base_url}/models")
        assert models.status_code == 200

        # The worker child process (`python -m worker`) runs a real chain.
        spec = load_chain("classify_then_answer", settings)
        workflow_id = f"devstack-{uuid.uuid4()}"
        result = await (
            await RunClient(client, task_queue=settings.task_queue).start(
                spec, {"question": "What is 2 + 2?"}, run_id=workflow_id
            )
        ).handle.result()
        assert result.status == "completed"
        assert result.usage.cost_usd > 0

        # The API child serves the same Temporal and the same database.
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ) as http:
            assert (await http.get("/readyz")).status_code == 200
            run = (await http.get(f"/v1/runs/{workflow_id}")).json()
            assert run["status"] == "completed" and run["output"] == result.output
            chains = (await http.get("/v1/chains")).json()["items"]
            assert "classify_then_answer" in {chain["name"] for chain in chains}

        # A second stack on the same settings reuses everything and starts nothing.
        again = DevStack(settings)
        await again.start()
        assert again.started == {}
        assert again.reused == ["temporal", "simulator", "worker", "api"]
        await again.stop()
        assert all((await stack.check()).values())
    finally:
        pids = stack.pids
        await stack.stop()

    assert set(pids) == {"temporal", "simulator", "worker", "api"}
    assert all(gone(pid) for pid in pids.values()), pids
    assert not stack.is_running
    assert not await stack.temporal_reachable()
    assert not await stack.simulator_reachable()
    assert not await stack.api_reachable()
    assert (tmp_path / "state" / "logs" / "temporal.log").is_file()
    assert (tmp_path / "state" / "temporal.db").is_file()

    # Restarted on the same SQLite file, Temporal still knows the finished run.
    restarted = DevStack(settings, simulator=False, worker=False, api=False)
    await restarted.start()
    try:
        client = await restarted.client()
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.status == WorkflowExecutionStatus.COMPLETED
    finally:
        await restarted.stop()


async def test_foreign_process_on_the_temporal_port_is_reported(
    tmp_path: Path, foreign_listener: int
) -> None:
    settings = stack_settings(tmp_path, temporal_address=f"127.0.0.1:{foreign_listener}")
    stack = DevStack(settings, simulator=False, worker=False, api=False)
    stack.port_busy_wait_s = 0.3
    with pytest.raises(DevStackError, match=f"port {foreign_listener} on 127.0.0.1 is in use"):
        await stack.start()
    assert stack.started == {}


async def test_server_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    # A directory where the SQLite file should be makes the server exit at once.
    (tmp_path / "temporal.db").mkdir()
    stack = DevStack(stack_settings(tmp_path), simulator=False, worker=False, api=False)
    with pytest.raises(DevStackError) as caught:
        await stack.start()
    message = str(caught.value)
    assert "Temporal dev server exited with code" in message
    assert "unable to open database file" in message
    assert stack.started == {}


# ------------------------------------------------------- supervisor and lock


async def chorus_run(settings: Settings, chain: str, value: object) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "run", chain, "--input", json.dumps(value),
        cwd=ROOT, env=stack_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def test_chorus_dev_prints_every_address_and_the_reviewer_inbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from cli import stack_commands

    settings = stack_settings(tmp_path / "state", api_host="0.0.0.0")
    printed = Console(file=io.StringIO(), width=400)
    monkeypatch.setattr(stack_commands, "console", printed)

    stack_commands._print_stack(DevStack(settings))

    out = printed.file.getvalue()  # type: ignore[attr-defined]

    def row(label: str) -> str:
        return next(line for line in out.splitlines() if line.strip("│ ").startswith(label + " "))

    assert settings.temporal_address in row("Temporal")
    assert f"http://127.0.0.1:{settings.temporal_ui_port}" in row("Temporal UI")
    assert f"http://127.0.0.1:{settings.api_port}  (docs: /docs)" in row("API")
    inbox = row("Inbox")
    assert f"http://127.0.0.1:{settings.api_port}/inbox " in inbox, out
    assert "reviewer or admin API key" in inbox
    # Without the API there is no inbox to point at.
    printed.file = io.StringIO()
    stack_commands._print_stack(DevStack(settings, api=False))
    assert "/inbox" not in printed.file.getvalue()


@pytest.mark.slow
async def test_chorus_dev_restarts_a_killed_worker_and_says_so(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    dev = await DevProcess.start(settings)
    try:
        await dev.wait_for("Ctrl-C to stop")
        worker_pid = int((tmp_path / "state" / "run" / "worker.pid").read_text())

        os.kill(worker_pid, signal.SIGKILL)

        out = await dev.wait_for("worker restarted (pid ")
        log = tmp_path / "state" / "logs" / "worker.log"
        assert f"worker (pid {worker_pid}) was killed by SIGKILL; restarting it" in out
        assert f"log: {log}" in out
        new_pid = int((tmp_path / "state" / "run" / "worker.pid").read_text())
        assert new_pid != worker_pid and f"worker restarted (pid {new_pid})" in out

        code, output = await chorus_run(
            settings, "classify_then_answer", {"question": "What is 2 + 2?"}
        )
        assert code == 0, output
        assert "completed" in output

        dev.proc.send_signal(signal.SIGINT)
        assert await dev.finish() == 0, dev.err
    finally:
        await dev.kill()
    assert gone(new_pid)


@pytest.mark.slow
async def test_two_chorus_dev_at_once_one_runs_the_other_names_it_and_exits(
    tmp_path: Path,
) -> None:
    settings = stack_settings(tmp_path / "state")
    devs = await asyncio.gather(DevProcess.start(settings), DevProcess.start(settings))
    try:
        # The loser exits at once; the winner keeps running.
        done, _ = await asyncio.wait(
            [asyncio.create_task(dev.proc.wait()) for dev in devs],
            timeout=30,
            return_when=asyncio.FIRST_COMPLETED,
        )
        assert len(done) == 1
        [loser] = [dev for dev in devs if dev.proc.returncode is not None]
        [winner] = [dev for dev in devs if dev is not loser]
        assert await loser.finish() == 1
        state_dir = (tmp_path / "state").resolve()
        assert f"another dev stack (pid {winner.proc.pid} " in loser.err, loser.err
        assert f"is running on the state directory {state_dir}" in loser.err
        assert "started" not in loser.out

        out = await winner.wait_for("Ctrl-C to stop")
        for service in ("Temporal ", "Simulator", "Worker", "API"):
            line = next(line for line in out.splitlines() if service in line)
            assert "started, pid" in line, out
        assert f"http://127.0.0.1:{settings.api_port}/inbox" in out, out
        stack = DevStack(settings)
        assert await stack.check() == {name: True for name in stack.services}

        winner.proc.send_signal(signal.SIGINT)
        assert await winner.finish() == 0, winner.err
    finally:
        for dev in devs:
            await dev.kill()
    # The lock went with its owner: the state directory is free again.
    again = DevStack(settings, simulator=False, worker=False, api=False, exclusive=True)
    await again.start()
    await again.stop()


async def test_supervisor_gives_up_on_a_crash_loop_and_on_temporal(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    stack = DevStack(settings, simulator=False, api=False)
    stack.restart_limit = 1
    await stack.start()
    try:
        # Another exclusive stack on this state directory is refused, naming this process.
        rival = DevStack(settings, simulator=False, worker=False, api=False, exclusive=True)
        with pytest.raises(DevStackError, match=f"another dev stack \\(pid {os.getpid()} "):
            await rival.start()
        assert rival.started == {}

        said: list[str] = []
        supervisor = asyncio.create_task(stack.supervise(said.append, poll_interval=0.1))
        os.kill(stack.pids["worker"], signal.SIGKILL)
        async with asyncio.timeout(60):
            while not any("worker restarted" in line for line in said):
                assert not supervisor.done(), supervisor
                await asyncio.sleep(0.1)
        os.kill(stack.pids["worker"], signal.SIGKILL)
        with pytest.raises(DevStackError) as caught:
            await asyncio.wait_for(supervisor, 30)
        message = str(caught.value)
        assert message.startswith("worker was killed by SIGKILL: 2 crashes within 60 s")
        assert f"last lines of {stack.log_dir / 'worker.log'}" in message

        # Temporal is not restarted: its exit ends the supervision at once.
        stack.started.pop("worker").close_log()
        os.kill(stack.pids["temporal"], signal.SIGKILL)
        with pytest.raises(DevStackError, match="Temporal dev server was killed by SIGKILL"):
            await asyncio.wait_for(stack.supervise(said.append, poll_interval=0.1), 30)
    finally:
        await stack.stop()
    assert said[0].startswith("worker (pid ")
