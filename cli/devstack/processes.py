"""The dev stack's child processes: each started in its own process group,
its output appended to STATE_DIR/logs/<name>.log and its pid written to
STATE_DIR/run/<name>.pid, waited for until it answers, and stopped with
SIGTERM and then SIGKILL after a grace period.

Waiting for a child happens in a thread: the event loop may be running a
Temporal worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

from cli.devstack.errors import DevStackError
from cli.devstack.probes import PROBE_INTERVAL_S
from core.logging import get_logger
from core.settings import Settings

# One logger name for everything the dev stack logs, whichever module logs it.
log = get_logger("cli.devstack")

_LOG_TAIL_LINES = 40


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


def child_env(settings: Settings, state_dir: Path) -> dict[str, str]:
    """The environment of a child: this process's, with `settings` on top."""
    env = dict(os.environ)
    env.update(settings.to_env())
    # Children must find the same files whatever their working directory.
    env["CHORUS_STATE_DIR"] = str(state_dir)
    env["CHORUS_MODELS_FILE"] = str(settings.models_file.resolve())
    env["CHORUS_CHAINS_DIR"] = str(settings.chains_dir.resolve())
    if settings.log_format == "auto":
        env["CHORUS_LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"
    return env


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
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """Variables of this service only (over the stack's), kept for a restart."""

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


class ChildProcesses:
    """The processes one stack started, by service name, in start order."""

    def __init__(
        self,
        log_dir: Path,
        run_dir: Path,
        *,
        env: Callable[[], Mapping[str, str]],
        startup_timeout: float,
        grace_period: float,
    ) -> None:
        self.log_dir = log_dir
        self.run_dir = run_dir
        self.env = env
        self.startup_timeout = startup_timeout
        self.grace_period = grace_period
        self.started: dict[str, ManagedProcess] = {}

    async def launch(
        self,
        name: str,
        label: str,
        argv: list[str],
        ready: Callable[[ManagedProcess], Awaitable[bool]],
        extra_env: Mapping[str, str] | None = None,
    ) -> ManagedProcess:
        """Start a service and wait until `ready` says it answers. The
        process is in `started` as soon as it exists, answering or not.
        `extra_env`: variables of this service only (its metrics port)."""
        extra_env = dict(extra_env or {})
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
                env={**self.env(), **extra_env},
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
        proc = ManagedProcess(
            name, process, log_path, offset, pid_file, handle, argv, label, ready, extra_env
        )
        self.started[name] = proc
        log.debug("started", service=name, pid=process.pid, log=str(log_path))
        await self._wait_ready(proc)
        return proc

    async def relaunch(self, proc: ManagedProcess) -> ManagedProcess:
        """Start a service again the way it was started before."""
        return await self.launch(proc.name, proc.label, proc.argv, proc.ready, proc.extra_env)

    async def stop_all(self) -> None:
        """Stop every process, newest first, and forget it."""
        for name in reversed(list(self.started)):
            proc = self.started[name]
            await self._terminate(proc)
            proc.close_log()
            self._remove_pid_file(proc)
            del self.started[name]

    def read_pid(self, name: str) -> int | None:
        """The pid in STATE_DIR/run/<name>.pid if that process is alive and
        is a dev-stack child of that name."""
        try:
            pid = int((self.run_dir / f"{name}.pid").read_text().strip())
            cmdline = psutil.Process(pid).cmdline()
        except (OSError, ValueError, psutil.Error):
            return None
        return pid if name in " ".join(cmdline) else None

    def kill_leftovers(self) -> None:
        """At interpreter exit, never leave orphans behind (e.g. after a crash
        that skipped `stop()`)."""
        for proc in self.started.values():
            if proc.alive:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.process.wait(timeout=self.grace_period)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)

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
            await asyncio.sleep(PROBE_INTERVAL_S)

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

    @staticmethod
    def _remove_pid_file(proc: ManagedProcess) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int(proc.pid_file.read_text().strip()) == proc.pid:
                proc.pid_file.unlink()
