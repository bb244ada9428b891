"""The one check a run request passes before anything starts: the chain's
shape, its model aliases and tool names against the deployment's catalog,
the input against the input limits and the chain's input_schema, and the
workflow start itself (spec and input as Temporal will carry them).

The API, the CLI and the demo all call `check_run`, so a misspelt tool is
refused the same way everywhere, naming the tool, before a run exists; and a
run that passes can always be started (no value the data converter cannot
encode, no start Temporal refuses as too large).
"""

from __future__ import annotations

from typing import Any

from core.chain_spec import ChainSpec
from core.converter import DATA_CONVERTER
from core.input_limits import DEFAULT_LIMITS, InputLimits, InputProblem, check_value, json_size
from core.problems import InvalidChainSpec, InvalidInput
from runs.catalog import Catalog
from workflows.types import ChainInput
from workflows.validate import ChainSpecError, check_chain, validate_input


def problem_details(problems: Any) -> list[dict[str, str]]:
    return [{"path": p.path, "message": p.message} for p in problems]


TEMPLATE_TOO_DEEP = (
    "a template or expression is nested too deeply to parse (Jinja's parser recurses; "
    "flatten its brackets or blocks)"
)


def check_chain_against(spec: ChainSpec, catalog: Catalog, *, what: str) -> None:
    """Refuse a chain that names a model alias or a tool the deployment does
    not offer (InvalidChainSpec listing every problem). `what` names the
    chain in the message (e.g. "chain 'x' v3")."""
    try:
        check_chain(spec, catalog.aliases, known_tools=catalog.tools)
    except RecursionError:
        raise InvalidChainSpec(
            f"{what} cannot be checked: {TEMPLATE_TOO_DEEP}",
            details=[{"path": "<document>", "message": TEMPLATE_TOO_DEEP}],
        ) from None
    except ChainSpecError as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        raise InvalidChainSpec(
            f"{what} does not match this deployment: {first.path}: {first.message}{more}",
            details=problem_details(exc.problems),
        ) from None


def check_spec_size(spec: ChainSpec, limits: InputLimits, *, what: str) -> None:
    """Refuse a chain larger than `max_spec_bytes` as JSON (one published
    before the limit existed, say) rather than let Temporal refuse its start."""
    size = json_size(spec.model_dump(mode="json"))
    if size > limits.max_spec_bytes:
        raise InvalidChainSpec(
            f"{what} is {size} bytes as JSON; the limit is {limits.max_spec_bytes}",
            details=[{"path": "<document>", "message": f"{size} bytes as JSON"}],
            code="document_too_large",
        )


def check_input(spec: ChainSpec, value: Any, limits: InputLimits = DEFAULT_LIMITS) -> None:
    """Refuse an input over the input limits (depth, strings, numbers, size),
    or one that does not match the chain's input_schema (InvalidInput naming
    the first problem, details listing all)."""
    try:
        check_value(value, limits, root="input", max_bytes=limits.max_input_bytes)
    except InputProblem as problem:
        raise InvalidInput(problem.message, details=problem.details, code=problem.code) from None
    problems = validate_input(spec, value)
    if problems:
        raise InvalidInput(
            f"input does not match the input_schema of chain {spec.name!r} "
            f"v{spec.version}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            details=problem_details(problems),
        )


def check_start(spec: ChainSpec, value: Any, limits: InputLimits) -> None:
    """Encode the workflow start as the client will, so that whatever passes
    here starts (a value the converter cannot encode, or a start over
    Temporal's payload limit, is refused now and not after a stub exists)."""
    try:
        payloads = DATA_CONVERTER.payload_converter.to_payloads(
            [ChainInput(spec=spec, input=value)]
        )
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidInput(
            f"input cannot be sent to a run: {str(exc)[:300]}",
            details=[{"path": "input", "message": "cannot be encoded"}],
            code="input_not_encodable",
        ) from None
    size = sum(payload.ByteSize() for payload in payloads)
    if size > limits.max_start_bytes:
        raise InvalidInput(
            f"chain {spec.name!r} and its input together are {size} bytes encoded; a run "
            f"starts with at most {limits.max_start_bytes}",
            details=[{"path": "input", "message": f"start payload of {size} bytes"}],
            code="document_too_large",
        )


def check_run(spec: ChainSpec, value: Any, catalog: Catalog) -> None:
    """Everything a run request must pass before it starts."""
    what = f"chain {spec.name!r} v{spec.version}"
    check_chain_against(spec, catalog, what=what)
    check_spec_size(spec, catalog.limits, what=what)
    check_input(spec, value, catalog.limits)
    check_start(spec, value, catalog.limits)
