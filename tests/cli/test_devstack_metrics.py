"""`chorus dev` turns metrics on: the worker and the API it starts each get a
metrics port (9464 and 9465 unless CHORUS_METRICS_PORT moves them, a free
one when that is taken), and the console prints both addresses."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from cli.devstack.metrics_ports import free_port_near, wanted_port
from cli.devstack.stack import DevStack
from tests.cli.test_devstack import stack_settings
from tests.cli_runner import invoke


def test_ports_default_follow_the_setting_and_avoid_a_taken_one(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state", metrics_port=None)
    assert (wanted_port(settings, "worker"), wanted_port(settings, "api")) == (9464, 9465)
    moved = stack_settings(tmp_path / "state", metrics_port=19500)
    assert (wanted_port(moved, "worker"), wanted_port(moved, "api")) == (19500, 19501)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = free_port_near("127.0.0.1", port)
    assert other != port and other > 0


def test_each_service_gets_its_own_port_and_the_console_prints_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from cli import stack_commands

    stack = DevStack(stack_settings(tmp_path / "state"))
    worker_env, api_env = stack._metrics_env("worker"), stack._metrics_env("api")
    assert worker_env["CHORUS_METRICS_PORT"] != api_env["CHORUS_METRICS_PORT"]
    printed = Console(file=io.StringIO(), width=400)
    monkeypatch.setattr(stack_commands, "console", printed)
    stack_commands._print_stack(stack)
    out = printed.file.getvalue()  # type: ignore[attr-defined]
    worker_port, api_port = stack.metrics_ports["worker"], stack.metrics_ports["api"]
    assert f"Worker metrics  http://127.0.0.1:{worker_port}/metrics" in " ".join(out.split("│"))
    assert f"http://127.0.0.1:{api_port}/metrics" in out


def test_chorus_worker_on_a_taken_metrics_port_says_so_without_a_traceback(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "CHORUS_METRICS_PORT": str(port),
            "CHORUS_DATABASE_URL": f"sqlite:///{tmp_path / 'chorus.db'}",
            "CHORUS_STATE_DIR": str(tmp_path / "state"),
        }
        result = invoke(["worker"], env)

    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "CHORUS_METRICS_PORT" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
