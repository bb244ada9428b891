"""`python -m worker` as a separate OS process, for tests that kill a worker
or run several against one task queue."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> WorkerProcess:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "worker",
                cwd=ROOT, env=self.env, stdout=out, stderr=out,
            )  # fmt: skip
        return self

    async def kill(self) -> None:
        """SIGKILL: the worker gets no chance to finish anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL

    async def stop(self, grace_s: float = 15) -> None:
        """SIGTERM (the worker drains), then SIGKILL after `grace_s`."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
