"""No secret leaves: the dev stack runs with known canary values as the
provider keys, the admin key, a service key, an HTTP tool's secret and the
database password; every provider error class, a failing HTTP tool and the
API's error paths are driven, in each log format; then every file under the
state directory, every row of the database, every workflow history and every
API answer is searched for every canary. There must be none.

Each canary is checked to have been in play (the provider and the tool
really received it, the failures really were logged), so a sweep that finds
nothing means the secrets were kept, not that they were never used. The
canaries have no recognisable shape (no `sk-`, no `chorus_`): only the
process's knowledge of its own secrets can mask them.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from cli.devstack.stack import DevStack
from core.settings import Settings
from simulator.control import SimulatorControl
from simulator.models import DEFAULT_CONFIG_PATH, Fault
from store.engine import make_engine
from tests.integration.canary_sweep import Sweep
from tests.integration.capture_server import CaptureServer
from tests.pg import postgres_schema

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

TERMINAL = {"completed", "failed", "rejected", "cancelled", "terminated", "timed_out"}
RETRY = {"max_attempts": 2, "initial_interval_s": 0.2, "backoff": 1.0, "max_interval_s": 0.5}
PRICES = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
TIMEOUT_S = 3.0
"""The deadline of the aliases the simulator answers (too slowly, in the timeout case)."""

SIMULATED_FAULTS = {
    # case marker in the prompt → the fault the simulator answers with
    "case-auth": {"kind": "status", "status": 401, "error_code": "invalid_api_key"},
    "case-ratelimit": {"kind": "status", "status": 429, "retry_after": "0"},
    "case-server": {"kind": "status", "status": 500},
    "case-overloaded": {"kind": "status", "status": 529},
    "case-timeout": {"kind": "slow", "delay_s": 4 * TIMEOUT_S},
}
EXPECTED_MODEL_ERRORS = {
    "AuthenticationFailed",
    "RateLimited",
    "ProviderServerError",
    "ProviderOverloaded",
    "ProviderTimeout",
    "ProviderConnectionError",
}


def _canary(label: str) -> str:
    return f"canary{label}{uuid.uuid4().hex}"


def _free_port() -> int:
    """A port nothing listens on (bound, then released): for a service to
    start on, or for an alias or a tool that must meet a refused connection."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _database(request: pytest.FixtureRequest, backend: str, password: str) -> Iterator[str | None]:
    """None (SQLite in the state directory), or a fresh PostgreSQL schema
    reached through a URL carrying the canary password (the server trusts
    127.0.0.1, so the password is never checked: it only has to be kept)."""
    if backend == "sqlite":
        yield None
        return
    admin: Engine = request.getfixturevalue("postgres_admin")
    with postgres_schema(admin, "canary_") as url:
        yield make_url(url).set(password=password).render_as_string(hide_password=False)


def _write_files(root: Path, simulator_url: str, capture_url: str) -> dict[str, Path]:
    """The deployment under test: a model registry whose aliases read the
    canary keys, a tools file whose headers read the canary tool secret,
    one chain per alias and tool, and a simulator that insists on a key."""
    refused = f"http://127.0.0.1:{_free_port()}/v1"
    common = {"model": "sim-mini", "prices": PRICES, "timeout_s": 30}
    simulated = {**common, "timeout_s": TIMEOUT_S}
    models = {
        "canary_openai": {"provider": "openai", "base_url": simulator_url,
                          "api_key_env": "CANARY_OPENAI_KEY", **simulated},
        "canary_anthropic": {"provider": "anthropic", "base_url": simulator_url,
                             "api_key_env": "CANARY_ANTHROPIC_KEY", **simulated},
        "canary_refused": {"provider": "openai", "base_url": refused,
                           "api_key_env": "CANARY_OPENAI_KEY", **common},
        "canary_echo_openai": {"provider": "openai", "base_url": f"{capture_url}/v1",
                               "api_key_env": "CANARY_OPENAI_KEY", **common},
        "canary_echo_anthropic": {"provider": "anthropic", "base_url": f"{capture_url}/v1",
                                  "api_key_env": "CANARY_ANTHROPIC_KEY", **common},
    }  # fmt: skip
    secret_headers = {
        "Authorization": {"env": "CANARY_TOOL_SECRET", "prefix": "Bearer "},
        "X-Api-Key": {"env": "CANARY_TOOL_SECRET"},
    }
    tool = {
        "description": "A back-office call that fails.",
        "method": "GET",
        "url": "/tool/{case}",
        "parameters": {
            "type": "object",
            "properties": {"case": {"type": "string"}},
            "required": ["case"],
        },
        "headers": secret_headers,
        "timeout_s": 5,
        "max_attempts": 2,
    }
    tools = {
        "canary_http": {**tool, "base_url": capture_url},
        "canary_http_down": {**tool, "base_url": f"http://127.0.0.1:{_free_port()}"},
    }
    chains_dir = root / "chains"
    chains_dir.mkdir()
    question = {
        "type": "object",
        "properties": {"question": {"type": "string"}},
        "required": ["question"],
    }
    for alias in models:
        step = {"name": "ask", "kind": "model", "model": alias, "prompt": "{{ input.question }}"}
        chain = {"name": alias, "defaults": RETRY, "input_schema": question, "steps": [step]}
        (chains_dir / f"{alias}.yaml").write_text(yaml.safe_dump(chain))
    for name in tools:
        step = {"name": "call", "kind": "tool", "tool": name, "arguments": {"case": "fail"}}
        chain = {"name": name, "input_schema": question, "steps": [step]}
        (chains_dir / f"{name}.yaml").write_text(yaml.safe_dump(chain))

    files = {
        "models": root / "models.yaml",
        "tools": root / "tools.yaml",
        "simulator": root / "simulator.yaml",
        "chains": chains_dir,
    }
    files["models"].write_text(yaml.safe_dump({"version": 1, "models": models}))
    files["tools"].write_text(yaml.safe_dump({"version": 1, "tools": tools}))
    simulator = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    simulator["require_api_key"] = True
    files["simulator"].write_text(yaml.safe_dump(simulator))
    return files


class Api:
    """An HTTP client on the stack's API that keeps every answer."""

    def __init__(self, base_url: str) -> None:
        self.responses: list[httpx.Response] = []
        self.exempt: set[int] = set()
        """Answers allowed to carry a secret (the one that creates a key)."""
        # A fresh connection per request: after a 500 the server closes its
        # end, and a reused connection would race that close.
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=60,
            limits=httpx.Limits(max_keepalive_connections=0),
            event_hooks={"response": [self._keep]},
        )

    async def _keep(self, response: httpx.Response) -> None:
        await response.aread()
        self.responses.append(response)

    async def call(self, method: str, path: str, key: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return await self.http.request(method, path, headers=headers, **kwargs)

    def kept(self) -> list[httpx.Response]:
        return [r for r in self.responses if id(r) not in self.exempt]


async def _start(api: Api, key: str, chain: str, question: str) -> str:
    run_id = f"canary-{chain}-{uuid.uuid4().hex[:8]}"
    body = {"chain": chain, "input": {"question": question}, "run_id": run_id}
    response = await api.call("POST", "/v1/runs", key, json=body)
    assert response.status_code == 201, response.text
    return run_id


async def _finished(api: Api, key: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        response = await api.call("GET", f"/v1/runs/{run_id}", key)
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        if run["status"] in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        await asyncio.sleep(0.3)


async def _drive_api_errors(
    api: Api, settings: Settings, admin_key: str, service_key: str, wrong_keys: list[str]
) -> list[int]:
    """401, 403, 404, 422 and 500 answers (the 500 from a row the API cannot
    read); the statuses seen."""
    json_body = {"headers": {"Content-Type": "application/json"}}
    calls: list[tuple[str, str, str | None, dict[str, Any]]] = [
        *(("GET", "/v1/runs", wrong, {}) for wrong in [*wrong_keys, None]),  # 401
        ("GET", "/v1/keys", service_key, {}),  # 403
        ("GET", "/v1/runs/canary-no-such-run", service_key, {}),  # 404
        ("GET", "/v1/chains/no_such_chain", admin_key, {}),
        ("DELETE", "/v1/keys/nobody", admin_key, {}),
        ("POST", "/v1/runs", service_key, {"json": {"chain": 5}}),  # 422
        ("POST", "/v1/runs", service_key, {"json": {"chain": "canary_openai", "input": {}}}),
        ("GET", "/v1/runs?limit=0", service_key, {}),
        # Inputs that crashed the API when this test was written (issue 8); they
        # may answer 4xx by now, which is as good for this test.
        *(
            ("POST", "/v1/runs", service_key, {"content": body, **json_body})
            for body in (
                '{"chain": "canary_openai", "input": {"question": "\\ud800"}}',
                '{"chain": "canary_openai", "version": 9223372036854775808}',
                '{"chain": "canary_openai", "input": ' + "[" * 1500 + "]" * 1500 + "}",
            )
        ),
    ]
    statuses = [(await api.call(m, path, key, **kw)).status_code for m, path, key, kw in calls]
    # A row the API cannot read back is a bug it answers with 500.
    engine = make_engine(settings.effective_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE runs SET status = 'no-such-status'"))
    finally:
        engine.dispose()
    statuses.append((await api.call("GET", "/v1/runs", service_key)).status_code)
    statuses.append((await api.call("GET", "/v1/runs", admin_key)).status_code)
    return statuses


def _log_lines(log_dir: Path, name: str) -> str:
    return (log_dir / f"{name}.log").read_text(errors="replace")


@pytest.mark.parametrize(
    ("log_format", "backend"),
    # Each log format and each backend once (a stack run costs ~20 s; the
    # four combinations were all seen passing when the test was written).
    [("json", "postgresql"), ("console", "sqlite")],
)
async def test_no_canary_leaves_in_logs_database_histories_or_answers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    log_format: str,
    backend: str,
) -> None:
    canaries = {
        "openai key": _canary("openai"),
        "anthropic key": _canary("anthropic"),
        "tool secret": _canary("tool"),
        "admin key": _canary("admin"),
        "database password": _canary("dbpw"),
    }
    monkeypatch.setenv("CANARY_OPENAI_KEY", canaries["openai key"])
    monkeypatch.setenv("CANARY_ANTHROPIC_KEY", canaries["anthropic key"])
    monkeypatch.setenv("CANARY_TOOL_SECRET", canaries["tool secret"])
    for name in ("DATABASE_URL", "CHORUS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)

    simulator_port = _free_port()
    simulator_url = f"http://127.0.0.1:{simulator_port}/v1"
    async with CaptureServer() as capture:
        with _database(request, backend, canaries["database password"]) as database_url:
            files = _write_files(tmp_path, simulator_url, capture.url)
            settings = Settings(
                temporal_address=f"127.0.0.1:{_free_port()}",
                temporal_ui_port=_free_port(),
                simulator_port=simulator_port,
                simulator_config=files["simulator"],
                api_port=_free_port(),
                admin_key=canaries["admin key"],
                state_dir=tmp_path / "state",
                models_file=files["models"],
                tools_file=files["tools"],
                chains_dir=files["chains"],
                database_url=database_url,
                task_queue=f"canary-{uuid.uuid4()}",
                log_format=log_format,  # type: ignore[arg-type]
                _env_file=None,  # type: ignore[call-arg]
            )
            sweep, statuses, runs = await _run_stack(settings, canaries, capture)

            # -- the canaries were in play ----------------------------------------------
            assert f"Bearer {canaries['openai key']}" in capture.header_values("authorization")
            assert canaries["anthropic key"] in capture.header_values("x-api-key")
            assert f"Bearer {canaries['tool secret']}" in capture.header_values("authorization")
            assert canaries["tool secret"] in capture.header_values("x-api-key")
            for chain in ("canary_openai", "canary_anthropic"):
                # The simulator refuses calls without a key: these were answered.
                assert runs[(chain, "ok")]["status"] == "completed", runs[(chain, "ok")]
            failed = {key: run for key, run in runs.items() if key[1] != "ok"}
            assert all(run["status"] == "failed" for run in failed.values()), failed
            assert 401 in statuses and 404 in statuses and 422 in statuses, statuses
            assert 500 in statuses, statuses

            log_dir = settings.state_dir / "logs"
            worker_log = _log_lines(log_dir, "worker")
            for error_type in EXPECTED_MODEL_ERRORS:
                assert error_type in worker_log, f"no {error_type} failure in worker.log"
            assert "tool_call.failed" in worker_log and "ToolHttpError" in worker_log
            # The providers' echoes of the keys reached the log, masked.
            assert "Incorrect API key provided: [redacted]" in worker_log
            assert "invalid x-api-key: [redacted]" in worker_log
            assert "unhandled error" in _log_lines(log_dir, "api")

            # -- and none of them is anywhere ---------------------------------------------
            sweep.files(settings.state_dir)
            sweep.database(settings.effective_database_url)

    assert sweep.searched["history"] >= len(runs), sweep.searched
    assert sweep.searched["row"] > len(runs), sweep.searched
    assert sweep.searched["API response"] > 2 * len(runs), sweep.searched
    assert {"worker.log", "api.log", "temporal.log", "simulator.log"} <= {
        path.name for path in (settings.state_dir / "logs").iterdir()
    }
    assert sweep.findings == [], "\n".join(sweep.findings)


async def _run_stack(
    settings: Settings, canaries: dict[str, str], capture: CaptureServer
) -> tuple[Sweep, list[int], dict[tuple[str, str], dict[str, Any]]]:
    """Start the stack, drive every failure, sweep the histories and the API
    answers while it runs, stop it (so every log is complete)."""
    admin_key = canaries["admin key"]
    stack = DevStack(settings, startup_timeout=90)
    await stack.start()
    api = Api(stack.api_url)
    try:
        created = await api.call(
            "POST", "/v1/keys", admin_key, json={"name": "canary-service", "role": "service"}
        )
        assert created.status_code == 201, created.text
        api.exempt.add(id(created))
        service_key = created.json()["key"]
        canaries["service key"] = service_key
        wrong_keys = [f"{admin_key}x", f"chorus_{uuid.uuid4().hex}{uuid.uuid4().hex}"]
        canaries["wrong key (admin near-miss)"] = wrong_keys[0]
        canaries["wrong key (chorus-shaped)"] = wrong_keys[1]

        async with SimulatorControl(settings.simulator_base_url) as sim:
            await sim.add_faults(
                *(
                    Fault(match=marker, times=50, **fault)  # type: ignore[arg-type]
                    for marker, fault in SIMULATED_FAULTS.items()
                ),
                # A provider that echoes the key it was sent.
                *(
                    Fault(
                        kind="status",
                        status=401,
                        match=f"case-echo via {chain}$",
                        message=f"Incorrect API key provided: {canaries[key]}",
                        times=50,
                    )
                    for chain, key in (
                        ("canary_openai", "openai key"),
                        ("canary_anthropic", "anthropic key"),
                    )
                ),
            )
        cases: list[tuple[str, str]] = [
            (chain, case)
            for chain in ("canary_openai", "canary_anthropic")
            for case in ("ok", *SIMULATED_FAULTS, "case-echo")
        ]
        cases += [
            ("canary_refused", "case-refused"),
            ("canary_echo_openai", "case-capture"),
            ("canary_echo_anthropic", "case-capture"),
            ("canary_http", "case-tool"),
            ("canary_http_down", "case-tool"),
        ]
        run_ids = await asyncio.gather(
            *(
                _start(api, service_key, chain, f"What is 2 + 2? {case} via {chain}")
                for chain, case in cases
            )
        )
        finished = await asyncio.gather(
            *(_finished(api, service_key, run_id) for run_id in run_ids)
        )
        runs = dict(zip(cases, finished, strict=True))
        statuses = await _drive_api_errors(api, settings, admin_key, service_key, wrong_keys)

        sweep = Sweep(canaries)
        await sweep.histories(await stack.client(), settings)
    finally:
        await api.http.aclose()
        await stack.stop()
    for response in api.kept():
        sweep.response(response)
    return sweep, statuses, runs
