"""`chorus compare`: bad input refused with a message naming what is wrong
before anything starts; a comparison on a deployment (`--no-stack`: the test's
Temporal server and worker) ends with the one JSON line, the HTML report and
the plot."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from cli.devstack.probes import port_open
from store.evals import get_evaluation
from tests.cli.test_devstack import gone, stack_env, stack_settings
from tests.cli_runner import ROOT, invoke
from tests.evals.conftest import DATA, EvalBench, tiny_set

VARIANTS = "qa_quick,qa_careful"


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CHORUS_CHAINS_DIR": str(DATA),
        "CHORUS_MODELS_FILE": str(ROOT / "chains" / "models.yaml"),
        "CHORUS_STATE_DIR": str(tmp_path / "state"),
        "CHORUS_DATABASE_URL": f"sqlite:///{tmp_path / 'chorus.db'}",
        # Nothing answers here: a refusal must come before any connection.
        "CHORUS_TEMPORAL_ADDRESS": "127.0.0.1:1",
        "CHORUS_LOG_FORMAT": "json",
        **extra,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.yaml", "--variants", VARIANTS], "missing.yaml: cannot read eval set"),
        (["{set}", "--variants", "qa_quick,no_such_chain"], "no_such_chain"),
        (["{set}", "--variants", " , "], "--variants names no chain"),
        (["{set}", "--variants", VARIANTS, "--concurrency", "0"], "concurrency must be between"),
        (["{set}", "--variants", VARIANTS, "--max-cost-usd", "-1"], "max_cost_usd must be"),
        (["{set}", "--variants", VARIANTS, "--judge", "nobody"], "judge alias 'nobody'"),
        (["{set}", "--variants", "qa_quick,qa_quick"], "variants must be distinct"),
        (["{empty}", "--variants", VARIANTS], "cases"),
        (["{bad_regex}", "--variants", VARIANTS], "case 'c1', field checks[0].pattern"),
    ],
    ids=[
        "missing-file",
        "unknown-variant",
        "no-variant",
        "bad-concurrency",
        "negative-budget",
        "unknown-judge",
        "same-variant-twice",
        "empty-eval-set",
        "bad-regex",
    ],
)
def test_bad_input_is_refused_before_anything_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty.yaml").write_text("name: empty\ncases: []\n")
    (tmp_path / "bad_regex.yaml").write_text(
        "name: bad\ncases:\n  - id: c1\n    input: {message: hi}\n"
        "    checks: [{kind: contains, pattern: '(unclosed'}]\n"
    )
    files = {
        "{set}": str(DATA / "tiny_set.yaml"),
        "{empty}": str(tmp_path / "empty.yaml"),
        "{bad_regex}": str(tmp_path / "bad_regex.yaml"),
    }
    argv = ["compare", *(files.get(a, a) for a in args), "--no-stack", "--out", str(tmp_path)]

    result = invoke(argv, cli_env(tmp_path))

    assert result.exit_code == 1, result.output
    assert "error:" in result.output and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())
    assert not list(tmp_path.glob("*.html"))


async def test_a_comparison_ends_with_the_json_line_the_report_and_the_plot(
    bench: EvalBench, temporal_env: Any, task_queue: str, store_engine: Engine, tmp_path: Path
) -> None:
    eval_set = tmp_path / "set.yaml"
    eval_set.write_text(
        (DATA / "tiny_set.yaml").read_text().replace("MARK", bench.marker), encoding="utf-8"
    )
    assert len(tiny_set(bench.marker).cases) == 3
    env = cli_env(
        tmp_path,
        CHORUS_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        CHORUS_TASK_QUEUE=task_queue,
        CHORUS_DATABASE_URL=str(store_engine.url),
    )
    out = tmp_path / "report"
    argv = ["compare", str(eval_set), "--variants", VARIANTS, "--no-stack", "--json"]

    # The CLI runs its own event loop: on a thread, so this test's worker keeps running.
    result = await asyncio.to_thread(invoke, [*argv, "--out", str(out)], env)

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"variants", "recommended", "report", "plot", "elapsed_s"} <= set(summary)
    by_name = {v["variant"]: v for v in summary["variants"]}
    for figures in by_name.values():
        assert {"pass_rate", "ci_low", "ci_high", "cost_usd", "p50_latency_s", "p95_latency_s"} <= (
            set(figures)
        )
        assert figures["ci_low"] <= figures["pass_rate"] <= figures["ci_high"]
    assert by_name["qa_quick"]["pass_rate"] == pytest.approx(2 / 3)
    assert by_name["qa_careful"]["pass_rate"] == 1.0
    assert summary["recommended"] == "qa_careful"
    assert Path(summary["report"]).is_file() and Path(summary["plot"]).is_file()
    assert Path(summary["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "qa_quick" in Path(summary["report"]).read_text(encoding="utf-8")
    stored = get_evaluation(store_engine, summary["eval_id"])
    assert stored is not None and stored.report is not None
    assert stored.report["recommended"] == summary["recommended"]


async def test_a_comparison_the_budget_stops_exits_3_with_its_partial_report(
    bench: EvalBench, temporal_env: Any, task_queue: str, store_engine: Engine, tmp_path: Path
) -> None:
    eval_set = tmp_path / "set.yaml"
    eval_set.write_text((DATA / "tiny_set.yaml").read_text().replace("MARK", bench.marker))
    env = cli_env(
        tmp_path,
        CHORUS_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        CHORUS_TASK_QUEUE=task_queue,
        CHORUS_DATABASE_URL=str(store_engine.url),
    )
    argv = ["compare", str(eval_set), "--variants", "qa_careful", "--no-stack", "--json"]
    # Two strong-model cases fit (see test_workflow's budget test), the third does not.
    argv += ["--max-cost-usd", "0.00215", "--concurrency", "1", "--out", str(tmp_path / "r")]

    result = await asyncio.to_thread(invoke, argv, env)

    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["stopped_reason"] == "max_cost_usd reached"
    assert 0 < summary["cases_scored"] < summary["cases_total"] == 3
    assert Path(summary["report"]).is_file()


@pytest.mark.slow
async def test_sigterm_stops_everything_chorus_compare_started(tmp_path: Path) -> None:
    """A SIGTERM (a supervisor, `kill`, `make` stopped) mid-evaluation stops the
    dev stack the command started, as Ctrl-C does: no Temporal server,
    simulator or worker outlives it, and no port stays open."""
    settings = stack_settings(tmp_path / "state", chains_dir=DATA)
    # Sequential and long enough that it is still running when the signal comes.
    cases = [{"id": f"c{i}", "input": {"message": f"question {i}"}} for i in range(200)]
    eval_set = tmp_path / "long.yaml"
    eval_set.write_text(json.dumps({"name": "long", "cases": cases}), encoding="utf-8")
    argv = ["compare", str(eval_set), "--variants", "qa_quick", "--concurrency", "1", "--json"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *argv, "--out", str(tmp_path / "report"),
        cwd=ROOT, env=stack_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        seen = b""
        async with asyncio.timeout(90):
            while b"200 cases" not in seen:
                line = await proc.stderr.readline()
                assert line, f"chorus compare ended before its evaluation started: {seen.decode()}"
                seen += line
        pids = {int(f.read_text()) for f in (tmp_path / "state" / "run").glob("*.pid")}
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 143, (seen + err).decode()
    assert out == b""
    assert b"terminated: stopped what chorus compare started" in err
    assert len(pids) == 3 and all(gone(pid) for pid in pids), pids
    for port in (settings.temporal_port, settings.temporal_ui_port, settings.simulator_port):
        assert not await port_open("127.0.0.1", port), port
    assert not list((tmp_path / "report").glob("*.html"))
