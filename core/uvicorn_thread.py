"""Serving an ASGI app with uvicorn on a socket we bind ourselves: on a
background thread (tests, benchmarks, `chorus dev`) or in the foreground.

Binding the socket ourselves lets port 0 pick a free port and still tell the
caller which one it got before any request is made. The API server and the
model simulator both serve this way; this module is the one place that knows
how.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import ClassVar, Self

import uvicorn


def bind_socket(
    host: str,
    port: int,
    *,
    what: str,
    error: type[Exception],
    backlog: int = 128,
    hint: str = "",
) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one).

    Raises `error` naming `what` could not listen where, plus `hint` (what
    the user can do about it), when the address is taken or not ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on accepted sockets
    # whose proto says TCP, and without it every keep-alive request waits
    # ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise error(f"{what} cannot listen on {host}:{port}: {exc}{hint}") from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def client_host(host: str) -> str:
    """The host a client on this machine connects to for a server bound to `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def run_until_stopped(config: uvicorn.Config, sock: socket.socket) -> bool:
    """Serve `config` on `sock` until SIGINT/SIGTERM (uvicorn drains requests
    in flight first); closes the socket. Returns whether the server started."""
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return server.started


class BackgroundServer:
    """An ASGI app served by uvicorn on a daemon thread; `port=0` picks a free port.

    Use as `with Server(...) as s:` or `async with ...`, or call `start()` /
    `stop()`. Subclasses say what they are (`what`, used in error messages),
    which error a failed start raises (`start_error`), and may tune the
    timeouts and listen backlog.
    """

    what: ClassVar[str] = "the server"
    start_error: ClassVar[type[Exception]] = RuntimeError
    thread_name: ClassVar[str] = "chorus-uvicorn"
    start_timeout_s: ClassVar[float] = 15.0
    stop_timeout_s: ClassVar[float] = 10.0
    backlog: ClassVar[int] = 128
    bind_hint: ClassVar[str] = ""

    def __init__(self, uvicorn_config: uvicorn.Config, *, host: str, port: int) -> None:
        self.host = host
        self._uvicorn_config = uvicorn_config
        self._requested_port = port
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.what} is not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{client_host(self.host)}:{self.port}"

    def _on_started(self) -> None:
        """Called once the server accepts connections (announce it, say)."""

    def start(self) -> Self:
        """Serve on a background thread; returns once the server accepts
        connections. Starting a started server does nothing."""
        if self._thread is not None:
            return self
        sock = bind_socket(
            self.host,
            self._requested_port,
            what=self.what,
            error=self.start_error,
            backlog=self.backlog,
            hint=self.bind_hint,
        )
        self._port = sock.getsockname()[1]
        server = uvicorn.Server(self._uvicorn_config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self.thread_name, daemon=True
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise self.start_error(f"{self.what} did not start on {self.host}:{self._port}")
            time.sleep(0.01)
        self._on_started()
        return self

    def stop(self) -> None:
        """Let requests in flight finish (forcing the exit after
        `stop_timeout_s`), then close the socket. Stopping twice is harmless."""
        server, thread, sock = self._server, self._thread, self._sock
        self._server, self._thread, self._sock = None, None, None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=self.stop_timeout_s)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout=5)
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
