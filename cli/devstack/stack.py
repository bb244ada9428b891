"""`DevStack`: the dev stack as one object. Decides, service by service,
whether to reuse what answers or start it (processes.py), owns the state
directory's lock (state_lock.py) and hands crashes to the supervisor
(supervisor.py); see the package's docstring for the whole picture."""

from __future__ import annotations

import asyncio
import atexit
import functools
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import NoReturn, Self

from pydantic import SecretStr
from temporalio.client import Client

from cli.devstack.errors import DevStackError
from cli.devstack.probes import (
    LOCAL_HOSTS,
    PROBE_INTERVAL_S,
    ServiceProbes,
    _answers_ok,
    api_url,
    port_open,
    wait_until,
)
from cli.devstack.processes import ChildProcesses, ManagedProcess, child_env
from cli.devstack.state_lock import StateDirLock, describe_process
from cli.devstack.supervisor import Supervisor
from cli.devstack.temporal_server import find_temporal_binary, temporal_dev_server_args
from core.logging import get_logger
from core.settings import Settings

# One logger name for everything the dev stack logs, whichever module logs it.
log = get_logger("cli.devstack")

SERVICES = ("temporal", "codec", "simulator", "worker", "api")
"""Start order; stop order is the reverse."""


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
        if settings.encryption_enabled and settings.codec_auth_token is None:
            # The codec server needs a token; this stack's UI gets it in its endpoint.
            token = SecretStr(secrets.token_urlsafe(24))
            settings = settings.model_copy(update={"codec_auth_token": token})
        self.settings = settings
        self.with_codec = settings.encryption_enabled
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
        self.reused: list[str] = []
        self.metrics_ports: dict[str, int] = {}
        """Where the worker and the API this stack started serve /metrics."""
        self.owner_pid: int | None = None
        """The pid of the stack that owns the state directory, when this
        one reuses it instead of owning it."""
        self._lock = StateDirLock(self.state_dir)
        self._probes = ServiceProbes(settings)
        self._children = ChildProcesses(
            self.log_dir,
            self.run_dir,
            env=functools.partial(child_env, settings, self.state_dir),
            startup_timeout=startup_timeout,
            grace_period=grace_period,
        )
        self._supervisor = Supervisor(self._children)
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
        return api_url(self.settings)

    def metrics_url(self, service: str) -> str | None:
        """The /metrics address of a service this stack started, or None."""
        port = self.metrics_ports.get(service)
        return None if port is None else f"http://{self.settings.metrics_host}:{port}/metrics"

    @property
    def inbox_url(self) -> str:
        """The reviewer inbox, a page of the API (api/inbox/)."""
        return f"{self.api_url}/inbox"

    @property
    def codec_url(self) -> str:
        return self.settings.codec_server_url

    @property
    def services(self) -> list[str]:
        wanted = {
            "temporal": True,
            "codec": self.with_codec,
            "simulator": self.with_simulator,
            "worker": self.with_worker,
            "api": self.with_api,
        }
        return [name for name in SERVICES if wanted[name]]

    # -------------------------------------------------------------- probes

    async def client(self) -> Client:
        """A client for the stack's Temporal (cached)."""
        return await self._probes.client()

    async def temporal_reachable(self) -> bool:
        """Temporal answers a namespace listing on the configured address."""
        return await self._probes.temporal()

    async def codec_reachable(self) -> bool:
        """The codec server answers GET /healthz with 200."""
        return await _answers_ok(f"{self.codec_url}/healthz")

    async def simulator_reachable(self) -> bool:
        """The simulator answers GET /v1/models with 200."""
        return await self._probes.simulator()

    async def api_reachable(self) -> bool:
        """The API answers GET /healthz with 200."""
        return await self._probes.api()

    async def worker_reachable(self) -> bool:
        """A dev-stack worker (ours, or one a previous `chorus dev` started)
        is alive and polling. Pollers linger in Temporal for minutes after a
        worker dies, so a live pid from the pid file is required as well."""
        if "worker" in self.started:
            proc = self.started["worker"]
            return proc.alive and await self._probes.worker_polling(proc.pid)
        pid = self._children.read_pid("worker")
        return pid is not None and await self._probes.worker_polling(pid)

    async def check(self) -> dict[str, bool]:
        """Which of this stack's services answer right now."""
        probes: dict[str, Callable[[], Awaitable[bool]]] = {
            "temporal": self.temporal_reachable,
            "codec": self.codec_reachable,
            "simulator": self.simulator_reachable,
            "worker": self.worker_reachable,
            "api": self.api_reachable,
        }
        return {name: await probes[name]() for name in self.services}

    @property
    def started(self) -> dict[str, ManagedProcess]:
        """The processes this stack started, by service, in start order."""
        return self._children.started

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
        atexit.register(self._children.kill_leftovers)
        try:
            if await self._own_state_dir():
                if self.with_worker or self.with_api:
                    await asyncio.to_thread(self._upgrade_database)
                await self._ensure_temporal()
                if self.with_codec:
                    await self._ensure_codec_server()
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
        await self._children.stop_all()
        self._probes.forget_client()
        self._started_ok = False
        self._lock.release()
        atexit.unregister(self._children.kill_leftovers)

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
        await self._supervisor.watch(
            notify,
            restart_limit=self.restart_limit,
            restart_window_s=self.restart_window_s,
            poll_interval=poll_interval,
        )

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
            await asyncio.sleep(PROBE_INTERVAL_S)
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
        if settings.temporal_host not in LOCAL_HOSTS:
            raise DevStackError(
                f"Temporal at {settings.temporal_address} does not answer, and the dev stack "
                "only starts a local server: fix CHORUS_TEMPORAL_ADDRESS or start that server"
            )
        host, port = settings.temporal_host, settings.temporal_port
        if await port_open(host, port):
            # Possibly a server still starting (another `chorus dev`): give it a moment.
            if await wait_until(self.temporal_reachable, self.port_busy_wait_s):
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
        codec = None
        if self.with_codec:
            from api.codec_server import ui_endpoint

            codec = ui_endpoint(settings)
        args = temporal_dev_server_args(settings, self.db_file, codec_endpoint=codec)
        argv = [find_temporal_binary(), *args]
        await self._children.launch(
            "temporal", "Temporal dev server", argv, lambda _: self.temporal_reachable()
        )
        log.info(
            "Temporal dev server ready",
            address=settings.temporal_address,
            ui=self.ui_url,
            db=str(self.db_file),
        )

    async def _ensure_codec_server(self) -> None:
        """The codec server the UI decodes payloads through (encryption on)."""
        settings = self.settings
        if await self.codec_reachable():
            self.reused.append("codec")
            log.info("reusing running codec server", url=self.codec_url)
            return
        if await port_open(settings.codec_server_host, settings.codec_server_port):
            raise DevStackError(
                f"port {settings.codec_server_port} on {settings.codec_server_host} is in use by "
                "a process that does not answer GET /healthz: stop it or set "
                "CHORUS_CODEC_SERVER_PORT to a free port"
            )
        argv = [sys.executable, "-m", "cli", "codec-server"]
        await self._children.launch("codec", "codec server", argv, lambda _: self.codec_reachable())
        log.info("codec server ready", url=self.codec_url)

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
        await self._children.launch(
            "simulator", "simulator", argv, lambda _: self.simulator_reachable()
        )
        log.info("simulator ready", url=self.simulator_url)

    def _upgrade_database(self) -> None:
        """Bring the application database to the current schema (`chorus db
        upgrade`): the worker and the API only check it, and refuse one
        that is behind; in development the stack upgrades it for you."""
        from sqlalchemy.exc import SQLAlchemyError

        from store.engine import make_engine
        from store.errors import StoreError
        from store.schema import upgrade

        engine = make_engine(self.settings.effective_database_url)
        try:
            before, after = upgrade(engine)
        except (SQLAlchemyError, StoreError) as exc:
            raise DevStackError(f"cannot upgrade the application database: {exc}") from exc
        finally:
            engine.dispose()
        if before.current != after.current:
            log.info("application database upgraded", before=before.state, revision=after.current)

    def _metrics_env(self, service: str) -> dict[str, str]:
        """`chorus dev` turns metrics on (cli/devstack/metrics_ports.py)."""
        from cli.devstack.metrics_ports import METRICS_PORT_ENV, free_port_near, wanted_port

        port = free_port_near(self.settings.metrics_host, wanted_port(self.settings, service))
        self.metrics_ports[service] = port
        return {METRICS_PORT_ENV: str(port)}

    async def _ensure_worker(self) -> None:
        if await self.worker_reachable():
            self.reused.append("worker")
            log.info("reusing running worker", task_queue=self.settings.task_queue)
            return
        argv = [sys.executable, "-m", "worker"]
        proc = await self._children.launch(
            "worker", "worker", argv, lambda p: self._probes.worker_polling(p.pid),
            self._metrics_env("worker"),
        )  # fmt: skip
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
        proc = await self._children.launch(
            "api", "API", argv, lambda _: self.api_reachable(), self._metrics_env("api")
        )
        log.info("API ready", url=self.api_url, pid=proc.pid)
