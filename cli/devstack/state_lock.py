"""The lock that makes one dev stack the owner of a state directory.

An exclusive `flock` on STATE_DIR/dev.lock, held from the start of a stack
to its stop; the file names the owner's pid so that another instance can say
whom it met. The kernel drops the lock when the owner dies, however it dies,
so a stale file never blocks anyone. The file itself is never deleted:
unlinking a locked file lets a newcomer lock a new inode of the same name
while the owner still holds the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import psutil

LOCK_NAME = "dev.lock"


class StateDirLock:
    """Exclusive ownership of a state directory by one process."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it.
        The descriptor is not inherited by child processes (os.open sets
        O_CLOEXEC), so the dev stack's children never keep it alive."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor drops the flock

    def holder(self) -> int | None:
        """The pid written by the current owner (None while it has not
        written it yet, or when nobody owns the directory)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None


def describe_process(pid: int) -> str:
    """`pid 123 (python -m cli dev)`, or just `pid 123` when its command
    line cannot be read."""
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return f"pid {pid}"
    return f"pid {pid} ({cmdline})" if cmdline else f"pid {pid}"
