"""Serving the API with uvicorn: in the foreground (`chorus api`) or on a
background thread (tests, benchmarks).

Binding the socket ourselves lets port 0 pick a free port and still tell the
caller which one it got before any request is made.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from api.app import create_app
from api.state import read_model_aliases
from worker.logging import get_logger
from worker.settings import Settings

_START_TIMEOUT_S = 30.0

log = get_logger(__name__)


class ApiStartError(RuntimeError):
    """The API server did not come up."""


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose
    # proto says TCP, and without it keep-alive requests wait on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ApiStartError(
            f"cannot listen on {host}:{port}: {exc} (set CHORUS_API_PORT to a free port)"
        ) from exc
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def _config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        log_level=settings.log_level,
        # structlog (configured once per process) carries the app's logs; the
        # access log would repeat every request at INFO.
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn drains requests in flight first).

    Raises ApiStartError when the port is taken or start-up fails (the model
    registry is checked first, so a bad file is named instead of a bare
    "startup failed")."""
    try:
        read_model_aliases(settings.models_file)
    except ValueError as exc:
        raise ApiStartError(str(exc)) from exc
    host = host or settings.api_host
    sock = _bind(host, settings.api_port if port is None else port)
    server = uvicorn.Server(_config(settings))
    log.info("Chorus API listening", url=f"http://{host}:{sock.getsockname()[1]}")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise ApiStartError(f"the API did not start on {host}:{sock.getsockname()[1]}")


class ApiServer:
    """The API on a background thread; `port=0` picks a free port.

    `with ApiServer(settings) as api: httpx.get(api.url + "/healthz")`. The
    app (and, once started, `app.state.chorus`) is at `api.app`.
    """

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.config = _config(settings)
        self.app = self.config.app

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the API server is not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ApiServer:
        if self._thread is not None:
            return self
        sock = _bind(self.host, self._requested_port)
        self._port = sock.getsockname()[1]
        server = uvicorn.Server(self.config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="chorus-api", daemon=True
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ApiStartError(f"the API did not start on {self.host}:{self._port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._sock
        self._server, self._thread, self._sock = None, None, None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=15)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout=5)
        if sock is not None:
            sock.close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
