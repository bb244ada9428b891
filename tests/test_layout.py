"""The house rules that import contracts cannot state: one module starts
chain runs, and the import contracts themselves are in force."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_CLIENT = Path("runs/client.py")
STARTS = ("start_workflow", "execute_workflow")
CHAIN_WORKFLOW_REFS = ("WORKFLOW_NAME", "ChainWorkflow", "ChainWorkflow.run")


def python_files() -> list[Path]:
    skip = {".venv", ".git", "build", "dist", ".state"}
    return [
        path.relative_to(ROOT)
        for path in ROOT.rglob("*.py")
        if not skip & set(path.relative_to(ROOT).parts)
    ]


def _reference(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_reference(node.value)}.{node.attr}"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ""


def chain_run_starts(source: str) -> list[int]:
    """Lines that start a ChainWorkflow (by its name constant, its class or
    its type name) with a Temporal client."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in STARTS
            and node.args
            and _reference(node.args[0]) in CHAIN_WORKFLOW_REFS
        ):
            lines.append(node.lineno)
    return lines


def test_the_scan_finds_a_chain_run_start() -> None:
    """The check below can fail: it recognises each way of starting a chain."""
    for first in ("WORKFLOW_NAME", "ChainWorkflow.run", '"ChainWorkflow"'):
        assert chain_run_starts(f"async def f(c):\n    await c.start_workflow({first}, x)\n")
    assert not chain_run_starts("async def f(c):\n    await c.start_workflow(Raw.run, x)\n")


def test_only_the_run_client_starts_chain_runs() -> None:
    found = {
        str(path): lines
        for path in python_files()
        if (lines := chain_run_starts((ROOT / path).read_text(encoding="utf-8")))
    }
    assert set(found) == {str(RUN_CLIENT)}, found


def test_the_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None, "import-linter is a dev dependency"
    result = subprocess.run(
        [lint_imports], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "broken" in result.stdout and " 0 broken" in result.stdout
