"""Parse and check chain specs before any run starts.

The CLI, the API and the worker all call this module, so a bad chain is
refused with every problem at once, each named by its document path
(`steps[1].branches[0].steps[0].model`) rather than by a failed run later.
Parsing covers shape (YAML and pydantic, workflows/spec_parsing.py, whose
names this module re-exports); `validate_chain` covers meaning: names, model
aliases, templates and which steps a template may read.

Pure: no I/O, so the workflow sandbox may import it too. It is a little
over 500 lines on purpose: the checks share one walk over the step tree and
the scope of earlier steps it carries (which outputs a template may read);
split apart, that scope would have to travel between modules.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from core.chain_spec import (
    AgentStep,
    ApprovalStep,
    ChainSpec,
    GuardStep,
    ModelStep,
    ParallelStep,
    RetrieveStep,
    RouteStep,
    Step,
    ToolStep,
)
from core.json_formats import FORMAT_CHECKER
from workflows import guards, templating
from workflows.pii import allowed_contact_problem
from workflows.spec_parsing import (
    DOCUMENT,
    ChainSpecError,
    SpecProblem,
    did_you_mean,
    format_path,
    iter_steps,
    join_path,
    parse_chain,
    parse_chain_yaml,
)

__all__ = [
    "DOCUMENT",
    "ChainSpecError",
    "SpecProblem",
    "check_chain",
    "iter_steps",
    "load_chain_yaml",
    "parse_chain",
    "parse_chain_yaml",
    "validate_chain",
    "validate_input",
]


TEMPLATE_VARIABLES = frozenset({"input", "steps"})
"""What prompts, system prompts and route conditions may read."""
ESCALATE_VARIABLES = TEMPLATE_VARIABLES | {"output"}
"""`escalate_when` may also read the step's own first answer."""


# -- loading ---------------------------------------------------------------------------


def load_chain_yaml(
    text: str,
    known_aliases: Collection[str],
    *,
    known_tools: Collection[str] | None = None,
) -> ChainSpec:
    """Parse and check in one call (what the CLI and the API do with a chain file)."""
    spec = parse_chain_yaml(text)
    check_chain(spec, known_aliases, known_tools=known_tools)
    return spec


# -- semantic checks -------------------------------------------------------------------

Position = tuple[tuple[str, int], ...]
"""Where a step sits: ("s", i) is an index in a step list, ("b", j) a branch,
("o", 0) a route's `otherwise`. Two positions say whether one step has surely
finished before another starts."""


@dataclass(frozen=True)
class _Located:
    step: Step
    path: str
    position: Position


def _locate(steps: Sequence[Step], path: str, position: Position) -> Iterator[_Located]:
    for i, step in enumerate(steps):
        step_path, step_pos = f"{path}[{i}]", (*position, ("s", i))
        yield _Located(step, step_path, step_pos)
        if isinstance(step, RouteStep | ParallelStep):
            for j, branch in enumerate(step.branches):
                yield from _locate(
                    branch.steps, f"{step_path}.branches[{j}].steps", (*step_pos, ("b", j))
                )
        if isinstance(step, RouteStep) and step.otherwise:
            yield from _locate(step.otherwise, f"{step_path}.otherwise", (*step_pos, ("o", 0)))


class _Checker:
    def __init__(
        self,
        spec: ChainSpec,
        known_aliases: Collection[str],
        known_tools: Collection[str] | None = None,
    ) -> None:
        self.spec = spec
        self.aliases = set(known_aliases)
        self.tools = None if known_tools is None else set(known_tools)
        self.problems: list[SpecProblem] = []
        self.located = list(_locate(spec.steps, "steps", ()))
        self.by_name: dict[str, _Located] = {}
        self.by_position: dict[Position, _Located] = {}
        for item in self.located:
            self.by_name.setdefault(item.step.name, item)
            self.by_position[item.position] = item

    def add(self, path: str, message: str) -> None:
        self.problems.append(SpecProblem(path, message))

    def run(self) -> list[SpecProblem]:
        self.check_names()
        for item in self.located:
            if isinstance(item.step, ModelStep):
                self.check_model_step(item)
            elif isinstance(item.step, RouteStep):
                self.check_route(item)
            elif isinstance(item.step, ParallelStep):
                self.check_parallel(item)
            elif isinstance(item.step, ApprovalStep):
                self.check_approval(item)
            elif isinstance(item.step, GuardStep):
                self.check_guard(item)
            elif isinstance(item.step, RetrieveStep):
                self.check_retrieve(item)
            elif isinstance(item.step, ToolStep):
                self.check_tool(item)
            elif isinstance(item.step, AgentStep):
                self.check_agent(item)
        if self.spec.output is not None and self.spec.output not in self.by_name:
            self.add(
                "output", f"unknown step {self.spec.output!r}{self.step_hint(self.spec.output)}"
            )
        if self.spec.input_schema is not None:
            self.check_schema("input_schema", self.spec.input_schema)
        return self.problems

    # names ----------------------------------------------------------------------------

    def check_names(self) -> None:
        for item in self.located:
            first = self.by_name[item.step.name]
            if first is not item:
                self.add(
                    f"{item.path}.name",
                    f"duplicate step name {item.step.name!r} (first used at {first.path}); "
                    "step names are unique across the whole chain, branches included",
                )
            if isinstance(item.step, ParallelStep):
                seen: dict[str, int] = {}
                for j, branch in enumerate(item.step.branches):
                    if branch.name in seen:
                        self.add(
                            f"{item.path}.branches[{j}].name",
                            f"duplicate branch name {branch.name!r} "
                            f"(first used at {item.path}.branches[{seen[branch.name]}])",
                        )
                    seen.setdefault(branch.name, j)

    # model steps ----------------------------------------------------------------------

    def check_model_step(self, item: _Located) -> None:
        step = item.step
        assert isinstance(step, ModelStep)
        path = item.path
        self.check_alias(f"{path}.model", step.model)
        for i, alias in enumerate(step.fallbacks):
            self.check_alias(f"{path}.fallbacks[{i}]", alias)
        if step.escalate_to is not None:
            self.check_alias(f"{path}.escalate_to", step.escalate_to)
            if step.escalate_to == step.model:
                self.add(f"{path}.escalate_to", "escalate_to names the step's own model")
            elif step.escalate_when is None and not (
                step.output_schema is not None and step.escalate_on_invalid
            ):
                self.add(
                    f"{path}.escalate_to",
                    "escalation can never happen: set escalate_when, "
                    "or output_schema with escalate_on_invalid",
                )
        if step.budget_fallback is not None:
            self.check_alias(f"{path}.budget_fallback", step.budget_fallback)
        if step.escalate_when is not None and step.escalate_to is None:
            self.add(f"{path}.escalate_when", "escalate_when needs escalate_to (the alias to ask)")
        if step.system is not None:
            self.check_template(f"{path}.system", step.system, item.position, TEMPLATE_VARIABLES)
        self.check_template(f"{path}.prompt", step.prompt, item.position, TEMPLATE_VARIABLES)
        if step.escalate_when is not None:
            self.check_template(
                f"{path}.escalate_when",
                step.escalate_when,
                item.position,
                ESCALATE_VARIABLES,
                expression=True,
            )
        if step.output_schema is not None:
            self.check_schema(f"{path}.output_schema", step.output_schema)

    def check_alias(self, path: str, alias: str) -> None:
        if alias in self.aliases:
            return
        if not self.aliases:
            self.add(path, f"unknown model alias {alias!r} (no model aliases are configured)")
            return
        hint = did_you_mean(alias, self.aliases)
        known = ", ".join(sorted(self.aliases))
        self.add(path, f"unknown model alias {alias!r}{hint} (known: {known})")

    def check_schema(self, path: str, schema: Mapping[str, Any]) -> None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as err:
            where = format_path([path, *err.path])
            self.add(where, f"not a valid JSON Schema: {err.message}")

    # route and parallel ----------------------------------------------------------------

    def check_route(self, item: _Located) -> None:
        step = item.step
        assert isinstance(step, RouteStep)
        for j, branch in enumerate(step.branches):
            self.check_template(
                f"{item.path}.branches[{j}].when",
                branch.when,
                item.position,
                TEMPLATE_VARIABLES,
                expression=True,
            )
            if not branch.steps:
                self.add(
                    f"{item.path}.branches[{j}].steps", "route branch routes nowhere: no steps"
                )
        if step.otherwise is not None and not step.otherwise:
            self.add(f"{item.path}.otherwise", "otherwise routes nowhere: no steps")

    def check_parallel(self, item: _Located) -> None:
        step = item.step
        assert isinstance(step, ParallelStep)
        for j, branch in enumerate(step.branches):
            if not branch.steps:
                self.add(
                    f"{item.path}.branches[{j}].steps",
                    f"parallel branch {branch.name!r} has no steps",
                )

    # approvals ------------------------------------------------------------------------

    def check_approval(self, item: _Located) -> None:
        step = item.step
        assert isinstance(step, ApprovalStep)
        path = item.path
        self.check_template(f"{path}.text", step.text, item.position, TEMPLATE_VARIABLES)
        for key, source in step.context.items():
            self.check_template(f"{path}.context.{key}", source, item.position, TEMPLATE_VARIABLES)
        if step.instructions is not None:
            self.check_template(
                f"{path}.instructions", step.instructions, item.position, TEMPLATE_VARIABLES
            )
        if step.when is not None:
            self.check_template(
                f"{path}.when", step.when, item.position, TEMPLATE_VARIABLES, expression=True
            )
        if step.on_timeout == "escalate" and step.escalate_to_role is None:
            self.add(f"{path}.escalate_to_role", "on_timeout: escalate needs escalate_to_role")
        if step.on_timeout != "escalate":
            for field in ("escalate_to_role", "escalation_timeout_s"):
                if getattr(step, field) is not None:
                    self.add(f"{path}.{field}", f"{field} is only used with on_timeout: escalate")
        if step.escalate_to_role is not None and step.escalate_to_role == step.required_role:
            self.add(f"{path}.escalate_to_role", "escalate_to_role names the step's own role")

    # guards ---------------------------------------------------------------------------

    def check_guard(self, item: _Located) -> None:
        step = item.step
        assert isinstance(step, GuardStep)
        path, rules = item.path, step.rules
        target = self.earlier_step(f"{path}.target", step.target, item.position, "guard")
        if (
            target is not None
            and step.on_fail == "retry"
            and not isinstance(target.step, ModelStep)
        ):
            self.add(
                f"{path}.target",
                f"on_fail: retry re-runs the target with the violations fed back, so it must "
                f"be a model step; {step.target!r} is a {target.step.kind} step "
                "(use on_fail: escalate or fail)",
            )
        rules_path = f"{path}.rules"
        if rules == type(rules)():
            self.add(rules_path, "a guard with no rules always passes: set at least one rule")
        if rules.json_schema is not None:
            self.check_schema(f"{rules_path}.json_schema", rules.json_schema)
        for field in ("required_patterns", "forbidden_patterns"):
            for i, pattern in enumerate(getattr(rules, field)):
                problem = guards.pattern_problem(pattern)
                if problem is not None:
                    self.add(f"{rules_path}.{field}[{i}]", f"{pattern!r} is {problem}")
        seen_pii: set[str] = set()
        for i, kind in enumerate(rules.pii):
            if kind in seen_pii:
                self.add(f"{rules_path}.pii[{i}]", f"duplicate PII kind {kind!r}")
            seen_pii.add(kind)
        seen_contacts: set[str] = set()
        for i, contact in enumerate(rules.pii_allow):
            where = f"{rules_path}.pii_allow[{i}]"
            problem = allowed_contact_problem(contact)
            if problem is not None:
                self.add(where, f"{contact!r}: {problem}")
            elif contact.casefold() in seen_contacts:
                self.add(where, f"duplicate allowed contact {contact!r}")
            seen_contacts.add(contact.casefold())
        if rules.pii_allow and not rules.pii:
            self.add(
                f"{rules_path}.pii_allow",
                "pii_allow lists contacts the PII rule may skip, but the guard has no pii rule",
            )
        if (
            rules.min_length is not None
            and rules.max_length is not None
            and rules.min_length > rules.max_length
        ):
            self.add(
                f"{rules_path}.min_length",
                f"min_length {rules.min_length} is greater than max_length {rules.max_length}: "
                "no output can pass",
            )
        if rules.citations_from is not None:
            source = self.earlier_step(
                f"{rules_path}.citations_from", rules.citations_from, item.position, "guard"
            )
            if source is not None and not isinstance(source.step, RetrieveStep):
                self.add(
                    f"{rules_path}.citations_from",
                    f"citations_from must name a retrieve step; {rules.citations_from!r} "
                    f"is a {source.step.kind} step",
                )

    def earlier_step(self, path: str, name: str, reader: Position, what: str) -> _Located | None:
        """The step `name` if the step at `reader` may read its output, else None
        (with the problem added at `path`)."""
        target = self.by_name.get(name)
        if target is not None and target.position == reader:
            self.add(path, f"a {what} cannot name itself; name an earlier step")
            return None
        message = self.reference_problem(name, reader)
        if message is not None:
            if target is not None:
                message += f"; a {what} reads an earlier step's output"
            self.add(path, message)
            return None
        return target

    # retrieval, tools and agents ------------------------------------------------------

    def check_retrieve(self, item: _Located) -> None:
        step = item.step
        assert isinstance(step, RetrieveStep)
        self.check_template(f"{item.path}.query", step.query, item.position, TEMPLATE_VARIABLES)

    def check_tool(self, item: _Located) -> None:
        step = item.step
        assert isinstance(step, ToolStep)
        path = item.path
        self.check_tool_name(f"{path}.tool", step.tool)
        for where, source in _string_leaves(step.arguments, f"{path}.arguments"):
            self.check_template(where, source, item.position, TEMPLATE_VARIABLES)
        if step.idempotency_key is not None:
            self.check_template(
                f"{path}.idempotency_key", step.idempotency_key, item.position, TEMPLATE_VARIABLES
            )

    def check_agent(self, item: _Located) -> None:
        step = item.step
        assert isinstance(step, AgentStep)
        path = item.path
        self.check_alias(f"{path}.model", step.model)
        for i, alias in enumerate(step.fallbacks):
            self.check_alias(f"{path}.fallbacks[{i}]", alias)
        if step.system is not None:
            self.check_template(f"{path}.system", step.system, item.position, TEMPLATE_VARIABLES)
        self.check_template(f"{path}.prompt", step.prompt, item.position, TEMPLATE_VARIABLES)
        first: dict[str, int] = {}
        for i, tool in enumerate(step.tools):
            if tool in first:
                self.add(
                    f"{path}.tools[{i}]",
                    f"duplicate tool {tool!r} (first listed at {path}.tools[{first[tool]}])",
                )
                continue
            first[tool] = i
            self.check_tool_name(f"{path}.tools[{i}]", tool)

    def check_tool_name(self, path: str, name: str) -> None:
        if self.tools is None or name in self.tools:
            return
        if not self.tools:
            self.add(path, f"unknown tool {name!r} (no tools are registered)")
            return
        hint = did_you_mean(name, self.tools)
        known = ", ".join(sorted(self.tools))
        self.add(path, f"unknown tool {name!r}{hint} (known: {known})")

    # templates ------------------------------------------------------------------------

    def check_template(
        self,
        path: str,
        source: str,
        reader: Position,
        allowed: frozenset[str],
        *,
        expression: bool = False,
    ) -> None:
        try:
            refs = templating.references(source, expression=expression)
        except templating.TemplateRenderError as err:
            self.add(path, str(err))
            return
        for name in sorted(refs.variables - allowed):
            self.add(
                path,
                f"unknown variable {name!r} (available: {', '.join(sorted(allowed))})",
            )
        for name in sorted(refs.steps):
            message = self.reference_problem(name, reader)
            if message is not None:
                self.add(path, message)

    def reference_problem(self, name: str, reader: Position) -> str | None:
        """Why the step at `reader` cannot read `steps.<name>`, or None if it can."""
        target = self.by_name.get(name)
        if target is None:
            return f"unknown step {name!r}{self.step_hint(name)}"
        pos = target.position
        if pos == reader:
            return f"step {name!r} refers to itself (use `output` in escalate_when)"
        if pos[: len(reader)] == reader:
            return f"step {name!r} is inside this step and has not run yet"
        if reader[: len(pos)] == pos:
            return f"step {name!r} encloses this step and has not finished yet"
        k = next(i for i, (a, b) in enumerate(zip(reader, pos, strict=False)) if a != b)
        if reader[k][0] == "s" and pos[k][0] == "s":
            if pos[k][1] < reader[k][1]:
                return None  # an earlier step (or inside one): it has finished
            return f"step {name!r} runs later"
        parent = self.by_position[reader[:k]].step
        if isinstance(parent, ParallelStep):
            branch = parent.branches[pos[k][1]].name
            return (
                f"step {name!r} is in sibling branch {branch!r} of parallel step "
                f"{parent.name!r}, which runs at the same time"
            )
        return f"step {name!r} is in another branch of route {parent.name!r}; only one branch runs"

    def step_hint(self, name: str) -> str:
        return did_you_mean(name, self.by_name)


def _string_leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON-like value with its document path (tool
    arguments are templates at any depth)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _string_leaves(item, join_path(path, str(key)))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _string_leaves(item, f"{path}[{i}]")


def validate_chain(
    spec: ChainSpec,
    known_aliases: Collection[str],
    *,
    known_tools: Collection[str] | None = None,
) -> list[SpecProblem]:
    """Every semantic problem of a parsed spec (empty when it can run).

    `known_tools` are the registered tool names; None leaves tool names
    unchecked (a process without the tool registry, such as the API)."""
    return _Checker(spec, known_aliases, known_tools).run()


def check_chain(
    spec: ChainSpec,
    known_aliases: Collection[str],
    *,
    known_tools: Collection[str] | None = None,
) -> None:
    """Raise ChainSpecError listing every problem `validate_chain` finds."""
    problems = validate_chain(spec, known_aliases, known_tools=known_tools)
    if problems:
        raise ChainSpecError(problems)


def validate_input(spec: ChainSpec, value: Any) -> list[SpecProblem]:
    """Problems of a run input against the chain's `input_schema` (paths `input.x`)."""
    if spec.input_schema is None:
        return []
    validator = Draft202012Validator(spec.input_schema, format_checker=FORMAT_CHECKER)
    errors = sorted(
        validator.iter_errors(value), key=lambda e: [_sort_key(p) for p in e.absolute_path]
    )
    return [SpecProblem(format_path(["input", *e.absolute_path]), e.message) for e in errors]


def _sort_key(segment: str | int) -> tuple[int, int, str]:
    """Order paths like documents: list indexes numerically, keys alphabetically."""
    return (0, segment, "") if isinstance(segment, int) else (1, 0, str(segment))
