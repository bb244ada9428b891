"""The development supervisor of `chorus dev`: restarts a crashed simulator,
worker or API and says so, and gives up when a service crashes in a loop or
Temporal itself exits (the caller then stops the stack)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import NoReturn

from cli.devstack.errors import DevStackError
from cli.devstack.processes import ChildProcesses, ManagedProcess, describe_exit
from core.logging import get_logger

# One logger name for everything the dev stack logs, whichever module logs it.
log = get_logger("cli.devstack")

RESTARTABLE = frozenset({"codec", "simulator", "worker", "api"})
"""What the supervisor restarts after a crash. Not Temporal: everything else
depends on it, and a dev server that dies (a broken state file, a full disk)
would only die again; the stack stops and says so instead."""


class Supervisor:
    """Watches the processes of one stack; remembers each service's recent
    crashes across watches, so a crash loop is seen whoever watches."""

    def __init__(self, children: ChildProcesses) -> None:
        self.children = children
        self._crashes: dict[str, deque[float]] = {}

    async def watch(
        self,
        notify: Callable[[str], None],
        *,
        restart_limit: int,
        restart_window_s: float,
        poll_interval: float,
    ) -> NoReturn:
        """Restart each process found dead, until cancelled. Raises
        DevStackError when Temporal exits or a service crashes more than
        `restart_limit` times within `restart_window_s`."""
        while True:
            for proc in list(self.children.started.values()):
                if not proc.alive:
                    await self._restart(proc, notify, restart_limit, restart_window_s)
            await asyncio.sleep(poll_interval)

    async def _restart(
        self,
        proc: ManagedProcess,
        notify: Callable[[str], None],
        restart_limit: int,
        restart_window_s: float,
    ) -> None:
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
        while crashes[0] < now - restart_window_s:
            crashes.popleft()
        if len(crashes) > restart_limit:
            raise DevStackError(
                f"{proc.label} {how}: {len(crashes)} crashes within "
                f"{restart_window_s:.0f} s, so it is not restarted again; "
                f"last lines of {proc.log_path}:\n{proc.log_tail()}"
            )
        notify(
            f"{proc.label} (pid {proc.pid}) {how}; restarting it (restart {len(crashes)} of "
            f"at most {restart_limit} within {restart_window_s:.0f} s; "
            f"log: {proc.log_path})"
        )
        log.warning("restarting a crashed service", service=proc.name, pid=proc.pid, how=how)
        try:
            fresh = await self.children.relaunch(proc)
        except DevStackError:
            fresh = self.children.started[proc.name]
            if fresh.alive:
                raise  # it hangs instead of crashing: a restart would not help
            return  # it crashed again while starting: the next round counts it
        notify(f"{proc.label} restarted (pid {fresh.pid})")
