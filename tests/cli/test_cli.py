"""The `chorus` CLI: bad chains and inputs start nothing; runs report their
outcome through the exit code."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.models import Fault
from tests.cli_runner import invoke
from tests.conftest import activity_host
from tests.integration.conftest import ROOT
from tests.workflows.test_validate import BAD_SPECS
from worker.assembly import hosted_worker


@pytest.fixture
def cli_env(temporal_env: Any, simulator: Any, task_queue: str) -> dict[str, str]:
    return {
        "CHORUS_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "CHORUS_TASK_QUEUE": task_queue,
        "CHORUS_SIMULATOR_PORT": str(simulator.port),
        "CHORUS_LOG_FORMAT": "json",
    }


async def count_runs(client: Any) -> int:
    return (await client.count_workflows()).count


async def test_every_bad_chain_is_rejected_with_its_path_and_starts_nothing(
    temporal_env: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    before = await count_runs(temporal_env.client)
    for case, spec, path, phrase in BAD_SPECS:
        chain_file = tmp_path / f"{case}.yaml"
        chain_file.write_text(yaml.safe_dump(spec))

        result = await asyncio.to_thread(
            invoke, ["run", str(chain_file), "--input", '{"question": "q"}'], cli_env
        )

        assert result.exit_code == 1, (case, result.output)
        assert path in result.output and phrase in result.output, (case, result.output)
    assert len(BAD_SPECS) >= 10
    await asyncio.sleep(0.5)  # visibility is eventually consistent
    assert await count_runs(temporal_env.client) == before


async def test_input_that_breaks_the_input_schema_starts_nothing(
    temporal_env: Any, cli_env: dict[str, str]
) -> None:
    before = await count_runs(temporal_env.client)

    result = await asyncio.to_thread(
        invoke, ["run", "classify_then_answer", "--input", '{"question": ""}'], cli_env
    )

    assert result.exit_code == 1
    assert "input.question" in result.output
    await asyncio.sleep(0.5)
    assert await count_runs(temporal_env.client) == before


def offline_env(tmp_path: Path) -> dict[str, str]:
    """Enough settings for commands that fail before reaching Temporal."""
    return {
        "CHORUS_STATE_DIR": str(tmp_path / "state"),
        "CHORUS_CHAINS_DIR": str(ROOT / "chains"),
        "CHORUS_MODELS_FILE": str(ROOT / "chains" / "models.yaml"),
        "CHORUS_LOG_FORMAT": "json",
    }


def test_user_and_error_text_with_brackets_is_printed_as_written(tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    # A file name that rich would read as markup (`[/]` closes nothing: a
    # MarkupError if it were parsed) in an error message...
    missing = tmp_path / "odd [/] [bold]name[/bold].json"
    result = invoke(["run", "cascade_answer", "--input-file", str(missing)], env)
    assert result.exit_code == 1, result.output
    assert f"error: cannot read --input-file {missing}" in result.output

    # ...and in the title of a chain's list of problems.
    case, spec, path, phrase = BAD_SPECS[0]
    chain_file = tmp_path / "[red]chain [bold]x.yaml"  # markup would eat the tags
    chain_file.write_text(yaml.safe_dump(spec))
    result = invoke(["validate", str(chain_file)], env)
    assert result.exit_code == 1, (case, result.output)
    assert f"chain {chain_file} has problems:" in result.output
    assert path in result.output and phrase in result.output


def test_validate_finds_the_project_s_files_from_any_working_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHORUS_")}
    env["CHORUS_STATE_DIR"] = str(tmp_path / "state")
    # support_triage names model aliases and tools: both registries are read.
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "validate", "support_triage"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "chain support_triage" in proc.stdout and "is valid" in proc.stdout


def test_validate_accepts_a_shipped_chain(cli_env: dict[str, str]) -> None:
    result = invoke(["validate", "cascade_answer"], cli_env)

    assert result.exit_code == 0, result.output
    assert "cascade_answer" in result.output and "valid" in result.output


async def run_cli(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[int, str, str]:
    """The real `chorus` process: its exit code is what scripts see."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *args,
        cwd=cwd, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_prints_result_and_cost_and_fails_non_zero(
    temporal_env: Any,
    registry: Any,
    sim: Any,
    cli_env: dict[str, str],
    task_queue: str,
    store_engine: Any,
    tmp_path: Path,
) -> None:
    host = activity_host(registry, store_engine)
    async with hosted_worker(temporal_env.client, host, task_queue=task_queue):
        # Started outside the repository: the chain, models and tools are the project's.
        code, out, err = await run_cli(
            ["run", "cascade_answer", "--input", json.dumps({"question": "Opening hours?"})],
            cli_env,
            cwd=tmp_path,
        )
        assert code == 0, err
        assert "completed" in out and "usage by model" in out and "cost (USD)" in out

        # The provider's message is shown as written, brackets and all.
        message = "key [/] revoked [bold]for good[/bold]"
        await sim.add_faults(
            Fault(kind="status", status=401, model="sim-mini", message=message, times=5)
        )
        code, out, err = await run_cli(
            ["run", "cascade_answer", "--input", json.dumps({"question": "Again?"})], cli_env
        )
        assert code == 1, err
        assert "AuthenticationFailed" in out + err
        assert message in err and "Traceback" not in err
