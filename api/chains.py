"""Chains: read published versions, publish a new one.

A published spec is checked exactly as `chorus validate` checks a file
(shape, templates, step references, model aliases of the registry), and a
bad one is refused with every problem and its document path. Versions count
up by themselves; publishing the same spec as the latest is a no-op.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import Session

from api.schemas import ChainSummary
from core.chain_spec import ChainSpec
from core.input_limits import DEFAULT_LIMITS, InputLimits, InputProblem, json_size, loads_json
from core.problems import ChainNotFound, InvalidChainSpec, UnsupportedMediaType
from runs.catalog import Catalog
from runs.checks import TEMPLATE_TOO_DEEP
from store import (
    ChainVersion,
    ChainVersionPublic,
    get_chain_version,
    list_chain_versions,
    list_chains,
    publish_chain,
)
from workflows.validate import (
    DOCUMENT,
    ChainSpecError,
    SpecProblem,
    check_chain,
    parse_chain,
    parse_chain_yaml,
)

JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def public(row: ChainVersion) -> ChainVersionPublic:
    return ChainVersionPublic.model_validate(row, from_attributes=True)


def _problems(problems: Collection[SpecProblem]) -> list[dict[str, str]]:
    return [{"path": p.path, "message": p.message} for p in problems]


def _invalid(name: str, problems: list[SpecProblem]) -> InvalidChainSpec:
    count = len(problems)
    first = problems[0]
    more = f" (and {count - 1} more)" if count > 1 else ""
    return InvalidChainSpec(
        f"chain spec {name!r} has {count} problem{'s' if count != 1 else ''}: {first}{more}",
        details=_problems(problems),
    )


def parse_spec_body(
    name: str, body: bytes, content_type: str | None, limits: InputLimits = DEFAULT_LIMITS
) -> ChainSpec:
    """The request body (JSON, or YAML text) as a ChainSpec within the input
    limits (depth, strings, numbers, size after YAML alias expansion); 422
    listing problems."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media not in JSON_TYPES + YAML_TYPES:
        raise UnsupportedMediaType(
            f"send the chain spec as application/json or application/yaml, not {media!r}",
            details={"accepted": [*JSON_TYPES, *YAML_TYPES]},
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(name, [SpecProblem(DOCUMENT, "the body is not UTF-8 text")]) from None
    try:
        if media in YAML_TYPES:
            spec = parse_chain_yaml(text, limits)
        else:
            try:
                data = loads_json(text, limits, root="", max_bytes=limits.max_spec_bytes)
            except InputProblem as problem:
                problems = [SpecProblem(problem.path or DOCUMENT, problem.problem)]
                raise ChainSpecError(problems) from None
            spec = parse_chain(data)
    except ChainSpecError as exc:
        raise _invalid(name, exc.problems) from None
    size = json_size(spec.model_dump(mode="json"))
    if size > limits.max_spec_bytes:
        problem = f"the spec is {size} bytes as JSON; the limit is {limits.max_spec_bytes}"
        raise _invalid(name, [SpecProblem(DOCUMENT, problem)])
    return spec


def publish(
    session: Session, *, name: str, spec: ChainSpec, catalog: Catalog, author: str
) -> tuple[ChainVersionPublic, bool]:
    """Check a spec against the deployment's model aliases and tools, then
    store it; returns the stored version and whether it is new."""
    problems: list[SpecProblem] = []
    if spec.name != name:
        problems.append(
            SpecProblem(
                "name", f"the spec is named {spec.name!r} but was sent to /v1/chains/{name}"
            )
        )
    try:
        check_chain(spec, catalog.aliases, known_tools=catalog.tools)
    except ChainSpecError as exc:
        problems.extend(exc.problems)
    except RecursionError:
        problems.append(SpecProblem(DOCUMENT, TEMPLATE_TOO_DEEP))
    if problems:
        raise _invalid(name, problems)
    result = publish_chain(session, spec=spec, created_by=author)
    return public(result.chain_version), result.created


def read(session: Session, *, name: str, version: int | None) -> ChainVersionPublic:
    row = get_chain_version(session, name=name, version=version)
    if row is None:
        latest = get_chain_version(session, name=name) if version is not None else None
        if latest is not None:
            raise ChainNotFound(
                f"chain {name!r} has no version {version} (latest: {latest.version})",
                details={"chain": name, "version": version, "latest_version": latest.version},
            )
        raise ChainNotFound(f"no chain named {name!r} is published", details={"chain": name})
    return public(row)


def versions(session: Session, *, name: str) -> list[ChainVersionPublic]:
    rows = list_chain_versions(session, name=name)
    if not rows:
        raise ChainNotFound(f"no chain named {name!r} is published", details={"chain": name})
    return [public(row) for row in rows]


def summaries(session: Session) -> list[ChainSummary]:
    return [
        ChainSummary(
            name=row.name,
            latest_version=row.version,
            description=row.description,
            updated_at=row.created_at,
        )
        for row in list_chains(session)
    ]
