"""Searching everywhere a secret could have gone: every file under a
directory (logs, pid files, SQLite files, Temporal's own database), every
value of every table of the application database, every event of every
workflow history (`temporal workflow show --output json`, payloads decoded),
and every API answer's body and headers.

A `Sweep` knows the canaries (name → value) and collects one line per place
a canary was found; the test asserts there are none, and that each kind of
place was really searched (an empty sweep proves nothing)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from temporalio.client import Client

from cli.devstack.temporal_server import find_temporal_binary
from core.settings import Settings
from store.engine import make_engine

_EXCERPT_CHARS = 80


class Sweep:
    def __init__(self, canaries: Mapping[str, str]) -> None:
        self.canaries = dict(canaries)
        self.findings: list[str] = []
        self.searched: Counter[str] = Counter()
        """How many items of each kind were searched (files, rows, events...)."""

    def text(self, kind: str, where: str, data: str | bytes) -> None:
        """Search one item; every canary found becomes a finding with its context."""
        self.searched[kind] += 1
        raw = data if isinstance(data, bytes) else data.encode("utf-8", errors="surrogatepass")
        for name, value in self.canaries.items():
            needle = value.encode()
            at = raw.find(needle)
            if at < 0:
                continue
            count = raw.count(needle)
            start = max(0, at - _EXCERPT_CHARS)
            excerpt = raw[start : at + len(needle) + _EXCERPT_CHARS].decode(errors="replace")
            self.findings.append(f"{name} (x{count}) in {kind} {where}: …{excerpt}…")

    # -- places --------------------------------------------------------------

    def files(self, root: Path) -> None:
        """Every file under `root`, as bytes (a log, a pid file, a SQLite file)."""
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.text("file", str(path.relative_to(root)), path.read_bytes())

    def database(self, url: str) -> None:
        """Every value of every row of every table, as text."""
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                for table_name in sa.inspect(conn).get_table_names():
                    table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
                    for index, row in enumerate(conn.execute(sa.select(table))):
                        values = " | ".join(str(value) for value in row)
                        self.text("row", f"{table_name}#{index}", values)
        finally:
            engine.dispose()

    async def histories(self, client: Client, settings: Settings) -> None:
        """Every workflow execution's history as the Temporal CLI prints it,
        with every base64 payload decoded too."""
        async for execution in client.list_workflows():
            proc = await asyncio.create_subprocess_exec(
                find_temporal_binary(),
                "workflow", "show",
                "--workflow-id", execution.id, "--run-id", execution.run_id,
                "--output", "json",
                "--address", settings.temporal_address,
                "--namespace", settings.temporal_namespace,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            where = f"{execution.id}/{execution.run_id}"
            self.text("history", where, out)
            history = json.loads(out)
            self.searched["history event"] += len(history.get("events", []))
            for decoded in _base64_strings(history):
                self.text("history payload", where, decoded)

    def response(self, response: httpx.Response) -> None:
        """An API answer: status line, every header and the body."""
        where = f"{response.request.method} {response.request.url.path} → {response.status_code}"
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.text("API response", where, headers.encode() + b"\n\n" + response.content)


def _base64_strings(value: Any) -> Iterable[bytes]:
    """The decoded bytes of every string in a JSON value that is base64
    (payload `data` fields are)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _base64_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _base64_strings(item)
    elif isinstance(value, str) and len(value) >= 8 and len(value) % 4 == 0:
        try:
            yield base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return
