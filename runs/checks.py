"""The one check a run request passes before anything starts: the chain's
shape, its model aliases and tool names against the deployment's catalog,
and the input against the chain's input_schema.

The API, the CLI and the demo all call `check_run`, so a misspelt tool is
refused the same way everywhere, naming the tool, before a run exists.
"""

from __future__ import annotations

from typing import Any

from core.chain_spec import ChainSpec
from core.problems import InvalidChainSpec, InvalidInput
from runs.catalog import Catalog
from workflows.validate import ChainSpecError, check_chain, validate_input


def problem_details(problems: Any) -> list[dict[str, str]]:
    return [{"path": p.path, "message": p.message} for p in problems]


def check_chain_against(spec: ChainSpec, catalog: Catalog, *, what: str) -> None:
    """Refuse a chain that names a model alias or a tool the deployment does
    not offer (InvalidChainSpec listing every problem). `what` names the
    chain in the message (e.g. "chain 'x' v3")."""
    try:
        check_chain(spec, catalog.aliases, known_tools=catalog.tools)
    except ChainSpecError as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        raise InvalidChainSpec(
            f"{what} does not match this deployment: {first.path}: {first.message}{more}",
            details=problem_details(exc.problems),
        ) from None


def check_input(spec: ChainSpec, value: Any) -> None:
    """Refuse an input that does not match the chain's input_schema
    (InvalidInput naming the first problem, details listing all)."""
    problems = validate_input(spec, value)
    if problems:
        raise InvalidInput(
            f"input does not match the input_schema of chain {spec.name!r} "
            f"v{spec.version}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            details=problem_details(problems),
        )


def check_run(spec: ChainSpec, value: Any, catalog: Catalog) -> None:
    """Everything a run request must pass before it starts."""
    check_chain_against(spec, catalog, what=f"chain {spec.name!r} v{spec.version}")
    check_input(spec, value)
