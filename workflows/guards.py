"""Guard checkers: decide whether a step's output passes a guard's rules.

The guard step (workflows/steps/guard.py) calls `check` inside the workflow, so
everything here is pure and deterministic: no I/O, no clock, no randomness,
and the same output always yields the same violations in the same order (a
replay must re-derive the decision the original run took). Remote `$ref`s in
a JSON schema are never fetched for the same reason.

Violations are data, not exceptions: the workflow decides what a failure
means (retry the target with `describe(violations)` fed back, escalate to a
person, or fail the run). Messages never quote detected PII, since they end up
in workflow history, error messages and logs.

The detectors themselves live apart: personal data in workflows/pii.py,
citation parsing in workflows/citations.py.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel
from referencing import Registry

from core.chain_spec import GuardRules
from core.json_formats import FORMAT_CHECKER
from workflows.citations import cited_ids
from workflows.pii import PII_KINDS, PII_NAMES, PiiKind, find_pii

__all__ = [
    "MAX_CHECKED_CHARS",
    "InvalidGuardRule",
    "Violation",
    "check",
    "describe",
    "output_text",
    "pattern_problem",
]

MAX_CHECKED_CHARS: Final = 100_000
"""Text rules (patterns, PII, citations) scan at most this many characters, so
a guard stays cheap on a runaway output. Past it they fail closed: a
forbidden pattern or PII kind cannot be shown absent from text never read.
(The built-in detectors take well under a second on 100,000 adversarial
characters. A chain's own patterns run on Python's backtracking engine: the
shapes that are exponential are refused, but one unbounded repeat before a
literal, like `\\d+USD`, is still quadratic over a long degenerate run of
digits; keep them anchored on literals.)"""

MAX_SCHEMA_VIOLATIONS: Final = 10
"""JSON schema errors reported one by one; the rest are counted."""
_MAX_QUOTE: Final = 60
"""Longest excerpt of the output or of a pattern quoted in a message."""


@dataclass(frozen=True)
class Violation:
    """One broken rule. `rule` is one of json_schema, required_pattern,
    forbidden_pattern, pii_email, pii_phone, pii_card, min_length,
    max_length, citation_unknown, citation_missing; `message` says what is
    wrong in words a reviewer and a model can both act on."""

    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


class InvalidGuardRule(ValueError):
    """A guard rule that cannot be applied (a pattern that is not a regex, a
    schema that is not Draft 2020-12). Spec validation refuses these before
    a run starts, so meeting one in a run means the spec bypassed it."""


# -- the check -------------------------------------------------------------------------


def check(
    output: Any,
    rules: GuardRules,
    *,
    retrieved_ids: Collection[str] | None = None,
    chorus_formats: bool = True,
) -> list[Violation]:
    """Every violation of `rules` by `output`, in a fixed order (empty: it passes).

    Text rules read the output as text: a string as is, anything else as its
    canonical JSON (`output_text`). `json_schema` validates the structured
    output (a string is parsed as JSON first). `retrieved_ids` are the
    citation ids the `citations_from` step returned; None means nothing was
    retrieved, so any citation is unknown.
    """
    violations: list[Violation] = []
    if rules.json_schema is not None:
        violations += _check_schema(output, rules.json_schema, chorus_formats)
    text = output_text(output)
    window = text[:MAX_CHECKED_CHARS]
    cut = len(text) > MAX_CHECKED_CHARS
    for pattern in rules.required_patterns:
        if _compile(pattern).search(window) is None:
            where = f" in its first {MAX_CHECKED_CHARS} characters" if cut else ""
            violations.append(
                Violation(
                    "required_pattern",
                    f"the output does not match the required pattern {_quote(pattern)}{where}",
                )
            )
    for pattern in rules.forbidden_patterns:
        match = _compile(pattern).search(window)
        if match is not None:
            violations.append(
                Violation(
                    "forbidden_pattern",
                    f"the output matches the forbidden pattern {_quote(pattern)}: "
                    f"{_quote(match.group(0))} at character {match.start()}",
                )
            )
        elif cut:
            violations.append(
                Violation("forbidden_pattern", _unchecked(f"the pattern {_quote(pattern)}", text))
            )
    if rules.pii:
        pieces, pii_cut = _pii_pieces(output, window, cut)
        for kind in PII_KINDS:
            if kind in rules.pii:
                violations += _check_pii(kind, pieces, text, pii_cut, rules.pii_allow)
    violations += _check_length(text, rules)
    if rules.citations_from is not None:
        violations += _check_citations(window, text, cut, rules.citations_from, retrieved_ids)
    return violations


def describe(violations: Iterable[Violation]) -> str:
    """One line per violation (`- rule: message`), for error messages, the
    escalation view and the retry prompt that asks the model to fix them."""
    return "\n".join(f"- {v}".replace("\n", " ") for v in violations)


def output_text(output: Any) -> str:
    """The text the text rules read: a string as is, anything else as canonical
    JSON (sorted keys, no spaces, non-ASCII kept), so a structured output is
    checked the same way every time it is seen."""
    if isinstance(output, str):
        return output
    return json.dumps(
        _plain(output), sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a guard pattern, or None when it compiles."""
    try:
        _compile(pattern)
    except InvalidGuardRule as err:
        return str(err)
    return None


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        where = f" at position {err.pos}" if err.pos is not None else ""
        raise InvalidGuardRule(f"not a valid regular expression: {err.msg}{where}") from None
    if _nested_unbounded_repeat(pattern):
        # A regex cannot be interrupted inside a workflow (no clock, no
        # thread): `(a+)+$` over a long output would stall the workflow task.
        raise InvalidGuardRule(
            "a regular expression that can take exponential time (a repeat inside a "
            "repeat, like `(a+)+`); use a possessive quantifier (`a++`) or an atomic "
            "group (`(?>...)`) inside"
        )
    return compiled


def _nested_unbounded_repeat(pattern: str) -> bool:
    """True when an unbounded repeat holds another unbounded repeat that can
    backtrack (the classic catastrophic-backtracking shape). A heuristic over
    the stdlib's parser; if that private API changes, nothing is refused."""
    try:
        sre: Any = importlib.import_module("re._constants")
        sre_parse: Any = importlib.import_module("re._parser")
        tree = sre_parse.parse(pattern)
    except Exception:
        return False
    repeats = (sre.MAX_REPEAT, sre.MIN_REPEAT)
    sealed = (sre.ATOMIC_GROUP, sre.POSSESSIVE_REPEAT)

    def walk(node: Any, inside: bool) -> bool:
        if isinstance(node, sre_parse.SubPattern):
            node = node.data
        if not isinstance(node, list | tuple):
            return False
        if len(node) == 2 and node[0] in repeats:
            _, hi, sub = node[1]
            unbounded = hi == sre.MAXREPEAT
            return (unbounded and inside) or walk(sub, inside or unbounded)
        if len(node) == 2 and node[0] in sealed:
            return walk(node[1], False)
        return any(walk(child, inside) for child in node)

    return walk(tree, False)


def _quote(text: str) -> str:
    if len(text) > _MAX_QUOTE:
        text = text[: _MAX_QUOTE - 1] + "…"
    return repr(text)


def _unchecked(what: str, text: str) -> str:
    return (
        f"the output is {len(text)} characters long; only the first {MAX_CHECKED_CHARS} "
        f"are checked, so it cannot be shown free of {what}"
    )


# -- JSON schema -----------------------------------------------------------------------

_FENCED = re.compile(r"\A```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n?[ \t]*```\Z", re.DOTALL)
_NO_REMOTE_REFS = Registry()
"""An empty registry: a `$ref` to anything outside the schema (and the
meta-schemas) is unresolvable instead of fetched over the network."""


@functools.lru_cache(maxsize=128)
def _validator(schema_json: str, chorus_formats: bool = True) -> Draft202012Validator:
    """`chorus_formats`: check exactly Chorus's formats (core.json_formats),
    the same on every worker; False only replays runs recorded before them
    with jsonschema's own checker."""
    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as err:
        raise InvalidGuardRule(f"not a valid JSON Schema: {err.message}") from None
    checker = FORMAT_CHECKER if chorus_formats else Draft202012Validator.FORMAT_CHECKER
    return Draft202012Validator(schema, registry=_NO_REMOTE_REFS, format_checker=checker)


def _check_schema(
    output: Any, schema: Mapping[str, Any], chorus_formats: bool = True
) -> list[Violation]:
    if isinstance(output, str):
        candidate = output.strip()
        fenced = _FENCED.match(candidate)
        if fenced:
            candidate = fenced.group(1).strip()
        try:
            output = json.loads(candidate)
        except ValueError as err:
            return [Violation("json_schema", f"the output is not valid JSON ({err})")]
    validator = _validator(json.dumps(schema, sort_keys=True), chorus_formats)
    try:
        errors = sorted(
            validator.iter_errors(_plain(output)), key=lambda e: (e.json_path, e.message)
        )
    except Exception as err:  # an unresolvable $ref: the schema is at fault, not the output
        raise InvalidGuardRule(f"the JSON schema cannot be applied: {err}") from None
    violations = [
        Violation("json_schema", f"{e.json_path}: {_short(e.message)}")
        for e in errors[:MAX_SCHEMA_VIOLATIONS]
    ]
    if len(errors) > MAX_SCHEMA_VIOLATIONS:
        more = len(errors) - MAX_SCHEMA_VIOLATIONS
        violations.append(Violation("json_schema", f"... and {more} more schema errors"))
    return violations


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


# -- lengths ---------------------------------------------------------------------------


def _check_length(text: str, rules: GuardRules) -> list[Violation]:
    n = len(text)
    if rules.min_length is not None and n < rules.min_length:
        return [
            Violation(
                "min_length",
                f"the output is {n} characters long; at least {rules.min_length} are required",
            )
        ]
    if rules.max_length is not None and n > rules.max_length:
        return [
            Violation(
                "max_length",
                f"the output is {n} characters long; at most {rules.max_length} are allowed",
            )
        ]
    return []


# -- PII -------------------------------------------------------------------------------


def _pii_pieces(output: Any, window: str, cut: bool) -> tuple[list[tuple[str | None, str]], bool]:
    """What PII detectors read, and whether it was cut short: the text window
    of a string output, or each string and number of a structured one with
    its JSON path, up to MAX_CHECKED_CHARS in all. (Read raw, not as JSON
    text, where an escape such as `\\n` would glue to the next word.)"""
    if isinstance(output, str):
        return [(None, window)], cut
    pieces: list[tuple[str | None, str]] = []
    budget = MAX_CHECKED_CHARS
    for path, leaf in _leaves(_plain(output), "$"):
        if len(leaf) > budget:
            pieces.append((path, leaf[:budget]))
            return pieces, True
        pieces.append((path, leaf))
        budget -= len(leaf)
    return pieces, False


def _leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, str(value)
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            name = str(key)
            step = f".{name}" if name.isidentifier() else f"[{json.dumps(name)}]"
            yield from _leaves(value[key], path + step)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")


def _check_pii(
    kind: PiiKind,
    pieces: list[tuple[str | None, str]],
    text: str,
    cut: bool,
    allow: Collection[str] = (),
) -> list[Violation]:
    """Where each hit is: `character N` in a string output; the JSON path in
    a structured one (with the character when the string is long). `allow`:
    the chain's published contacts, which are not hits."""
    places: list[str] = []
    for path, piece in pieces:
        for start, _ in find_pii(piece, kind, allow):
            if path is None:
                places.append(str(start))
            else:
                places.append(f"{path} (character {start})" if len(piece) > 40 else path)
    one, many = PII_NAMES[kind]
    if places:
        shown = ", ".join(places[:5]) + (", ..." if len(places) > 5 else "")
        what = one if len(places) == 1 else f"{len(places)} {many}"
        if pieces and pieces[0][0] is None:
            shown = f"character{'s' if len(places) > 1 else ''} {shown}"
        return [Violation(f"pii_{kind}", f"the output contains {what} (at {shown})")]
    if cut:
        return [Violation(f"pii_{kind}", _unchecked(many, text))]
    return []


# -- citations -------------------------------------------------------------------------


def _check_citations(
    window: str,
    text: str,
    cut: bool,
    source: str,
    retrieved_ids: Collection[str] | None,
) -> list[Violation]:
    known = set(retrieved_ids or ())
    cited = cited_ids(window)
    violations = [
        Violation(
            "citation_unknown",
            f"the output cites [{cid}], which step {source!r} did not retrieve"
            + (f" (retrieved: {_list_ids(known)})" if known else " (it retrieved nothing)"),
        )
        for cid in cited
        if cid not in known
    ]
    if cut:
        violations.append(Violation("citation_unknown", _unchecked("unknown citations", text)))
    if not cited:
        violations.append(
            Violation(
                "citation_missing",
                f"the output cites no passage; cite at least one passage step {source!r} "
                "retrieved, as [document#position]",
            )
        )
    return violations


def _list_ids(ids: Collection[str], limit: int = 10) -> str:
    ordered = sorted(ids)
    shown = ", ".join(ordered[:limit])
    return shown + (f", ... ({len(ordered) - limit} more)" if len(ordered) > limit else "")
