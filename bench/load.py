"""The API under concurrent load, on SQLite and on PostgreSQL.

For each backend the benchmark starts a whole stack in child processes, as
`chorus dev` does (cli/devstack: Temporal dev server, simulator, worker,
API), on a fresh database (a SQLite file, or a new schema on the PostgreSQL
server), publishes a one-step chain, completes a few runs, and then sends
bursts, every request of a burst at once on its own connection:

  read     200 concurrent GET /v1/runs/{id} (a completed run)
  list     200 concurrent GET /v1/runs
  start    100 concurrent POST /v1/runs with distinct run ids
  same-id   50 concurrent POST /v1/runs of one run id and input
  flood    500 concurrent GET /v1/runs/{id}: more than the API takes on at
           once plus its queue (64 + 256 by default), so some are shed

It prints, per burst, p50/p99 latency, requests per second (requests over
the burst's wall time) and the status counts, and checks the answers
without stopping on them: a 5xx other than 503 with `Retry-After` is
counted as `bad_5xx`; every start must have been created once (201, and
exactly one row and one workflow for its id) or answered 200/409/503 with
`Retry-After`. The last line is one JSON object. Not a test: it asserts
nothing; it reports.

    .venv/bin/python bench/load.py                       # both backends
    .venv/bin/python bench/load.py --backends sqlite --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as `python bench/load.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from cli.devstack.stack import DevStack
from core.logging import configure_logging
from core.settings import Settings
from store import RunRecord, make_engine, session_scope

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = f"bench-load-admin-{uuid.uuid4().hex}"
POSTGRES_URL = os.environ.get(
    "CHORUS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CHAIN = "bench_load"
SEED_RUNS = 20
"""Completed runs in the index before the bursts (what the list returns)."""
FLOOD = 500
"""Within the listen backlog of `chorus api` (512), so every connection is accepted."""
REQUEST_TIMEOUT_S = 120.0
"""A request not answered in this long counts as a client timeout."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- a small HTTP/1.1 client ------------------------------------------------------------


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class Connection:
    """One keep-alive HTTP/1.1 connection. httpx spends about 10 ms of CPU
    per request on a new connection, as much as the API itself: on a 2-core
    machine the burst would measure the client. This spends a fraction of a
    millisecond, so the figures are the API's."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        url = httpx.URL(base_url)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, *, key: str | None = None, body: Any = None
    ) -> Response:
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(payload)}"]
        if key is not None:
            lines.append(f"Authorization: Bearer {key}")
        if body is not None:
            lines.append("Content-Type: application/json")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            content = await self._chunked()
        else:
            content = await self.reader.read()
        return Response(int(status_line.split(" ", 2)[1]), headers, content)

    async def _chunked(self) -> bytes:
        chunks = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return b"".join(chunks)
            chunks.append(chunk[:-2])

    def close(self) -> None:
        self.writer.close()


# -- one burst ---------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    latency_ms: float
    retry_after: bool
    body: Any = None


@dataclass
class Burst:
    name: str
    answers: list[Answer] = field(default_factory=list)
    wall_s: float = 0.0
    checks: list[str] = field(default_factory=list)
    """Problems with the answers (empty: every answer was one allowed)."""

    def figures(self) -> dict[str, Any]:
        latencies = sorted(a.latency_ms for a in self.answers)
        statuses = Counter(a.status for a in self.answers)
        bad_5xx = sum(1 for a in self.answers if a.status >= 500 and not _shed(a))
        shed = sorted(a.latency_ms for a in self.answers if _shed(a))
        return {
            "requests": len(self.answers),
            "p50_ms": round(_percentile(latencies, 50), 1),
            "p99_ms": round(_percentile(latencies, 99), 1),
            "max_ms": round(latencies[-1], 1) if latencies else 0.0,
            "requests_per_s": round(len(self.answers) / self.wall_s, 1) if self.wall_s else 0.0,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "bad_5xx": bad_5xx,
            "shed": len(shed),
            "shed_p50_ms": round(_percentile(shed, 50), 1),
            "problems": self.checks,
        }


def _shed(answer: Answer) -> bool:
    return answer.status == 503 and answer.retry_after


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


Request = Callable[[Connection, int], Awaitable[Response]]


async def burst(name: str, api: str, count: int, request: Request) -> Burst:
    """`count` requests at once, each on its own connection (opened before
    the clock starts, so the burst measures the API, not TCP handshakes)."""
    result = Burst(name)
    connections = await asyncio.gather(*(Connection.open(api) for _ in range(count)))
    gate = asyncio.Event()

    async def one(i: int) -> Answer:
        await gate.wait()
        began = time.perf_counter()
        try:
            response = await asyncio.wait_for(request(connections[i], i), REQUEST_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            result.checks.append(f"request {i}: {type(exc).__name__}")
            return Answer(0, (time.perf_counter() - began) * 1000, False)
        latency = (time.perf_counter() - began) * 1000
        body = response.json() if response.content else None
        return Answer(response.status_code, latency, "retry-after" in response.headers, body)

    try:
        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        await asyncio.sleep(0)
        began = time.perf_counter()
        gate.set()
        result.answers = await asyncio.gather(*tasks)
        result.wall_s = time.perf_counter() - began
    finally:
        for connection in connections:
            connection.close()
    for i, answer in enumerate(result.answers):
        if answer.status >= 500 and not _shed(answer):
            code = (answer.body or {}).get("error", {}).get("code")
            result.checks.append(f"request {i}: {answer.status} {code}")
    return result


# -- a stack per backend --------------------------------------------------------------


@contextlib.contextmanager
def postgres_schema(url: str) -> Any:
    """A URL whose search_path is a new schema, dropped afterwards."""
    admin = make_engine(url)
    schema = f"chorus_bench_load_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.asynccontextmanager
async def stack(backend: str, state_dir: Path) -> AsyncIterator[tuple[DevStack, str]]:
    with contextlib.ExitStack() as exits:
        if backend == "postgresql":
            database_url = exits.enter_context(postgres_schema(POSTGRES_URL))
        else:
            database_url = f"sqlite:///{state_dir / 'chorus.db'}"
        settings = Settings(
            temporal_address=f"127.0.0.1:{free_port()}",
            temporal_ui_port=free_port(),
            simulator_port=free_port(),
            api_port=free_port(),
            admin_key=ADMIN_KEY,
            state_dir=state_dir,
            models_file=ROOT / "chains" / "models.yaml",
            chains_dir=ROOT / "chains",
            task_queue=f"bench-load-{uuid.uuid4()}",
            database_url=database_url,
            log_format="json",
            log_level="warning",
            _env_file=None,  # type: ignore[call-arg]
        )
        dev = DevStack(settings, exclusive=True, startup_timeout=120)
        await dev.start()
        try:
            yield dev, database_url
        finally:
            await dev.stop()


async def prepare(api: str) -> tuple[str, str]:
    """A service key, the bench chain, and a completed run; returns the key
    and the run's id."""
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        created = await http.post(
            "/v1/keys",
            json={"name": f"bench-{uuid.uuid4().hex[:6]}", "role": "service"},
            headers=bearer(ADMIN_KEY),
        )
        created.raise_for_status()
        key = created.json()["key"]
        spec = {
            "name": CHAIN,
            "steps": [
                {
                    "name": "hello",
                    "kind": "model",
                    "model": "cheap",
                    "prompt": "Say hello to {{ input.name }}.",
                    "max_tokens": 32,
                }
            ],
        }
        (
            await http.put(f"/v1/chains/{CHAIN}", json=spec, headers=bearer(ADMIN_KEY))
        ).raise_for_status()
        run_ids = []
        for i in range(SEED_RUNS):
            response = await http.post(
                "/v1/runs",
                json={"chain": CHAIN, "input": {"name": f"seed {i}"}},
                headers=bearer(key),
            )
            response.raise_for_status()
            run_ids.append(response.json()["run_id"])
        for run_id in run_ids:
            await until_closed(http, run_id, key)
        return key, run_ids[-1]


async def until_closed(
    http: httpx.AsyncClient, run_id: str, key: str, timeout_s: float = 120
) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await http.get(f"/v1/runs/{run_id}", headers=bearer(key))
        if response.status_code == 200 and response.json()["status"] not in (
            "starting",
            "running",
        ):
            return str(response.json()["status"])
        if time.monotonic() > deadline:
            return f"still {response.status_code} {response.text[:80]}"
        await asyncio.sleep(0.2)


# -- checks on the starts -------------------------------------------------------------


def rows_for(database_url: str, run_ids: list[str]) -> Counter[str]:
    """How many run-index rows each id has."""
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            found = session.exec(
                select(RunRecord.run_id).where(col(RunRecord.run_id).in_(run_ids))
            ).all()
    finally:
        engine.dispose()
    return Counter(found)


async def workflows_for(dev: DevStack, run_id: str) -> int:
    client = await dev.client()
    return (await client.count_workflows(f"WorkflowId = '{run_id}'")).count


async def check_distinct(result: Burst, run_ids: list[str], database_url: str) -> None:
    rows = rows_for(database_url, run_ids)
    for run_id, answer in zip(run_ids, result.answers, strict=True):
        if answer.status == 201:
            if rows[run_id] != 1:
                result.checks.append(f"{run_id}: 201 but {rows[run_id]} rows")
        elif answer.status in (200, 409) or _shed(answer):
            if rows[run_id] and answer.status != 200:
                result.checks.append(f"{run_id}: {answer.status} but a row was left")
        else:
            result.checks.append(f"{run_id}: answered {answer.status}")


async def check_same_id(result: Burst, run_id: str, database_url: str, dev: DevStack) -> None:
    statuses = Counter(a.status for a in result.answers)
    if statuses[201] > 1:
        result.checks.append(f"{statuses[201]} requests created the run")
    for answer in result.answers:
        if answer.status not in (200, 201, 409) and not _shed(answer):
            result.checks.append(f"answered {answer.status}")
    rows = rows_for(database_url, [run_id])[run_id]
    workflows = await workflows_for(dev, run_id)
    if statuses[201] + statuses[200] and (rows != 1 or workflows != 1):
        result.checks.append(f"{rows} rows and {workflows} workflows for the one run id")


# -- main -----------------------------------------------------------------------------


async def run_backend(backend: str, rounds: int) -> dict[str, Any]:
    state_dir = Path(tempfile.mkdtemp(prefix=f"chorus-bench-load-{backend}-"))
    print(f"\n== {backend}: starting Temporal, simulator, worker and API ...", flush=True)
    async with stack(backend, state_dir) as (dev, database_url):
        api = dev.api_url
        key, run_id = await prepare(api)
        read_path = f"/v1/runs/{run_id}"
        # Warm-up (not recorded): the API's first requests open connections and import code.
        await burst("warm-up", api, 50, lambda c, i: c.request("GET", read_path, key=key))

        bursts: dict[str, list[Burst]] = {
            "read": [],
            "list": [],
            "start": [],
            "same-id": [],
            "flood": [],
        }
        ends: Counter[str] = Counter()
        drain_s: list[float] = []

        async def drain(run_ids: list[str]) -> None:
            """Wait until the runs a burst started have closed, so that the
            next burst meets an API, a worker and a Temporal at rest (100 runs
            keep the dev server's CPU busy for seconds)."""
            began = time.perf_counter()
            async with httpx.AsyncClient(base_url=api, timeout=60) as http:
                for run_id in run_ids:
                    ends[await until_closed(http, run_id, key)] += 1
            drain_s.append(round(time.perf_counter() - began, 1))

        for _ in range(rounds):
            bursts["read"].append(
                await burst("read", api, 200, lambda c, i: c.request("GET", read_path, key=key))
            )
            bursts["list"].append(
                await burst("list", api, 200, lambda c, i: c.request("GET", "/v1/runs", key=key))
            )

            ids = [f"bench-{uuid.uuid4()}" for _ in range(100)]

            def start_distinct(c: Connection, i: int, ids: list[str] = ids) -> Awaitable[Response]:
                body = {"chain": CHAIN, "input": {"name": f"n{i}"}, "run_id": ids[i]}
                return c.request("POST", "/v1/runs", key=key, body=body)

            start = await burst("start", api, 100, start_distinct)
            await check_distinct(start, ids, database_url)
            bursts["start"].append(start)
            await drain([i for i, a in zip(ids, start.answers, strict=True) if a.status == 201])

            same = f"bench-same-{uuid.uuid4()}"

            def start_same(c: Connection, i: int, same: str = same) -> Awaitable[Response]:
                body = {"chain": CHAIN, "input": {"name": "same"}, "run_id": same}
                return c.request("POST", "/v1/runs", key=key, body=body)

            same_id = await burst("same-id", api, 50, start_same)
            await check_same_id(same_id, same, database_url, dev)
            bursts["same-id"].append(same_id)
            await drain([same])

            bursts["flood"].append(
                await burst("flood", api, FLOOD, lambda c, i: c.request("GET", read_path, key=key))
            )

    figures: dict[str, Any] = {}
    for name, rounds_of in bursts.items():
        merged = Burst(name)
        for b in rounds_of:
            merged.answers += b.answers
            merged.wall_s += b.wall_s
            merged.checks += b.checks
        figures[name] = merged.figures()
        f = figures[name]
        print(
            f"  {name:8} {f['requests']:4} requests  p50 {f['p50_ms']:7.1f} ms  "
            f"p99 {f['p99_ms']:7.1f} ms  {f['requests_per_s']:6.1f} req/s  "
            f"statuses {f['statuses']}  bad 5xx {f['bad_5xx']}"
            + (f"  shed p50 {f['shed_p50_ms']} ms" if f["shed"] else "")
            + (f"  PROBLEMS {f['problems'][:5]}" if f["problems"] else ""),
            flush=True,
        )
    print(
        f"  runs started by the bursts, by final status: {dict(ends)} "
        f"(closed {drain_s} s after each start burst)",
        flush=True,
    )
    figures["runs_started"] = dict(ends)
    figures["drain_s"] = drain_s
    return figures


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_1m": round(os.getloadavg()[0], 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=1, help="bursts of each kind per backend")
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", _env_file=None), force=True)  # type: ignore[call-arg]

    report: dict[str, Any] = {
        "benchmark": "api_load",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rounds": args.rounds,
        "settings": {
            name: getattr(Settings(_env_file=None), name)  # type: ignore[call-arg]
            for name in (
                "api_max_in_flight",
                "api_max_queued",
                "api_queue_timeout_s",
                "api_threads",
            )
        },
    }
    print(f"machine: {report['machine']}  date: {report['date']}", flush=True)
    for backend in args.backends.split(","):
        report[backend] = await run_backend(backend.strip(), args.rounds)
    bursts = [
        v
        for b in args.backends.split(",")
        for k, v in report[b.strip()].items()
        if k not in ("runs_started", "drain_s")
    ]
    report["bad_5xx"] = sum(f["bad_5xx"] for f in bursts)
    report["problems"] = sum(len(f["problems"]) for f in bursts)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
