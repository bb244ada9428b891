"""Running the simulator: in a background thread (tests) or in the foreground (CLI).

Binding the socket ourselves lets port 0 pick a free port and still tell the
caller which one it got before any request is made.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import structlog
import uvicorn

from worker.simulator.app import create_app
from worker.simulator.models import SimulatorConfig, default_simulator_config, load_simulator_config

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8790
_START_TIMEOUT_S = 15.0

log = structlog.get_logger(__name__)


class SimulatorStartError(RuntimeError):
    """The simulator's server did not come up."""


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted
    # sockets whose proto says TCP, and without it every keep-alive request waits
    # ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SimulatorStartError(f"cannot bind the simulator to {host}:{port}: {exc}") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


class SimulatorServer:
    """The simulator on a background thread; `port=0` picks a free port.

    Use as `with SimulatorServer() as sim:` or `async with ...`, or call
    `start()` / `stop()`. `openai_base_url` is what an OpenAI client takes;
    Anthropic clients take `url` (they add `/v1/messages` themselves).
    """

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = DEFAULT_HOST, port: int = 0
    ) -> None:
        self.config = config or default_simulator_config()
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.app = create_app(self.config)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{_client_host(self.host)}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def start(self) -> SimulatorServer:
        if self._thread is not None:
            return self
        sock = _bind(self.host, self._requested_port)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=30
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="chorus-simulator", daemon=True
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SimulatorStartError(
                    f"the simulator did not start on {self.host}:{self._port}"
                )
            time.sleep(0.01)
        log.warning("chorus model SIMULATOR listening", url=self.url)
        return self

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._sock
        self._server, self._thread, self._sock = None, None, None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=10)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout=5)
        if sock is not None:
            sock.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SimulatorServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config_path: str | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Run the simulator in the foreground until interrupted (CLI, dev stack)."""
    config = load_simulator_config(Path(config_path)) if config_path else default_simulator_config()
    sock = _bind(host, port)
    actual_port = sock.getsockname()[1]
    log.warning(
        "chorus model SIMULATOR listening: replies are simulated, not from a real provider",
        url=f"http://{_client_host(host)}:{actual_port}",
        openai_base_url=f"http://{_client_host(host)}:{actual_port}/v1",
        config=config_path or "default_models.yaml",
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), log_level=log_level, access_log=False, lifespan="on")
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
