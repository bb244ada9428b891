"""Eval sets: the cases a comparison runs through every variant, and the
checks each answer must pass.

An eval set is YAML (one mapping with `name`, `description`, `cases`) or JSONL
(one case per line; the set is named after the file). Every model is frozen and
pydantic, so a case crosses the Temporal boundary as it was loaded and the
scoring activity sees exactly what the file said.

Regexes in checks are user input and run against model output, so they are
bounded three ways: a pattern is at most `MAX_PATTERN_CHARS` long, it is
compiled with the `regex` module at load time (a bad pattern is an
`EvalSetError` naming the file, the case and the field), and every match runs
with `regex`'s `timeout` over at most `MAX_SCAN_CHARS` of the answer, so a
catastrophic pattern fails its check instead of hanging a worker.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.pii import MAX_ALLOWED_CONTACTS, MAX_CONTACT_CHARS, allowed_contact_problem

__all__ = [
    "CASE_ID_PATTERN",
    "MAX_CASES",
    "MAX_FILE_BYTES",
    "MAX_PATTERN_CHARS",
    "MAX_SCAN_CHARS",
    "PII_KIND_NAMES",
    "REGEX_TIMEOUT_S",
    "Check",
    "CitesCheck",
    "ContainsCheck",
    "EvalCase",
    "EvalSet",
    "EvalSetError",
    "NoPiiCheck",
    "NotContainsCheck",
    "OutputEqualsCheck",
    "compile_pattern",
    "contact_problems",
    "load_eval_set",
]

CASE_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$"
"""Case ids name rows in the database, child run ids and report anchors."""
MAX_PATTERN_CHARS = 512
"""A longer check pattern is refused at load time."""
REGEX_TIMEOUT_S = 0.25
"""Wall-clock limit of one pattern match; past it the check fails, saying so."""
MAX_SCAN_CHARS = 200_000
"""Text checks read at most this many characters of an answer."""
MAX_CASES = 5_000
"""More cases than this is a mistake, not an eval set: refused at load time."""
MAX_FILE_BYTES = 20 * 1024 * 1024
"""An eval set file larger than this is refused before it is parsed."""

PiiKindName = Literal["email", "phone", "card"]
PII_KIND_NAMES: tuple[PiiKindName, ...] = ("email", "phone", "card")


class EvalSetError(ValueError):
    """An eval set that cannot be used; the message names the file, the case
    and the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str, ignore_case: bool) -> regex.Pattern[str]:
    """The compiled form of a check's pattern (cached: checks are frozen
    models that cross the Temporal boundary, so they carry the source only).

    Raises ValueError for a pattern too long or not a valid regex.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern is {len(pattern)} characters; at most {MAX_PATTERN_CHARS}")
    flags = regex.IGNORECASE if ignore_case else 0
    try:
        return regex.compile(pattern, flags | regex.VERSION0)
    except regex.error as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None


class _TextCheck(_Frozen):
    """A literal `text` or a regex `pattern` (exactly one) searched for in the
    answer; case-insensitive unless `ignore_case` is false."""

    text: str | None = Field(default=None, min_length=1, max_length=2_000)
    pattern: str | None = Field(default=None, min_length=1, max_length=MAX_PATTERN_CHARS)
    ignore_case: bool = True
    note: str | None = Field(default=None, max_length=500)
    """Why the check exists (shown in the report next to a failure)."""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            compile_pattern(pattern, True)
        return pattern

    @model_validator(mode="after")
    def _one_of_text_or_pattern(self) -> _TextCheck:
        if (self.text is None) == (self.pattern is None):
            raise ValueError("give exactly one of `text` or `pattern`")
        return self

    @property
    def shown(self) -> str:
        """How the report names what this check looks for."""
        return repr(self.text) if self.text is not None else f"/{self.pattern}/"


class ContainsCheck(_TextCheck):
    """The answer must contain this fact."""

    kind: Literal["contains"] = "contains"


class NotContainsCheck(_TextCheck):
    """The answer must not say this."""

    kind: Literal["not_contains"] = "not_contains"


class CitesCheck(_Frozen):
    """The answer must cite these Help Center documents (`refunds.md`):
    every one (`require: all`) or at least one (`require: any`)."""

    kind: Literal["cites"] = "cites"
    documents: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=20
    )
    require: Literal["all", "any"] = "all"
    note: str | None = Field(default=None, max_length=500)


class NoPiiCheck(_Frozen):
    """The answer must hold no personal data of these kinds."""

    kind: Literal["no_pii"] = "no_pii"
    kinds: list[PiiKindName] = Field(default_factory=lambda: list(PII_KIND_NAMES), min_length=1)
    allow: list[Annotated[str, Field(min_length=1, max_length=MAX_CONTACT_CHARS)]] = Field(
        default_factory=list, max_length=MAX_ALLOWED_CONTACTS
    )
    """Contact details that are not personal data: the business's own
    published phone number or email address, which a reply may quote. The
    same rule as a guard's `pii_allow` (core/pii.py): each entry is one
    phone number or address as a whole, matched by its digits or
    case-insensitively (`contact_problems` checks the entries)."""
    note: str | None = Field(default=None, max_length=500)


class OutputEqualsCheck(_Frozen):
    """A value in the run's output must equal `value`: `path` is dotted
    (`steps.classify.output.category`); a number segment indexes a list.
    Strings compare case-insensitively after trimming."""

    kind: Literal["output_equals"] = "output_equals"
    path: str = Field(min_length=1, max_length=300, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    value: str | int | float | bool | None
    note: str | None = Field(default=None, max_length=500)


Check = Annotated[
    ContainsCheck | NotContainsCheck | CitesCheck | NoPiiCheck | OutputEqualsCheck,
    Field(discriminator="kind"),
]


class EvalCase(_Frozen):
    """One chain input, what it is (labels such as category and complexity),
    and what a good answer must and must not do."""

    id: str = Field(pattern=CASE_ID_PATTERN)
    input: dict[str, Any]
    labels: dict[
        Annotated[str, Field(min_length=1, max_length=64)],
        Annotated[str, Field(max_length=200)],
    ] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list, max_length=50)
    reference: str | None = Field(default=None, max_length=20_000)
    """A reference answer, for a judge model and for people reading the report."""


class EvalSet(_Frozen):
    """A named list of cases with unique ids."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    description: str = Field(default="", max_length=5_000)
    cases: list[EvalCase] = Field(min_length=1, max_length=MAX_CASES)

    @model_validator(mode="after")
    def _unique_ids(self) -> EvalSet:
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"case id {case.id!r} appears more than once")
            seen.add(case.id)
        return self

    def case(self, case_id: str) -> EvalCase:
        """The case with this id (KeyError names it when there is none)."""
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(f"eval set {self.name!r} has no case {case_id!r}")


def contact_problems(eval_set: EvalSet) -> list[str]:
    """`case 'x', field checks[1].allow[0]: ...` for every `no_pii` allow
    entry that is not one whole phone number or email address (core/pii.py).

    Checked when an eval set is loaded and when an evaluation is prepared,
    not by the model: an evaluation in flight carries its eval set through
    Temporal, and a rule added later must not refuse it on replay.
    """
    problems: list[str] = []
    for case in eval_set.cases:
        for c, check in enumerate(case.checks):
            if not isinstance(check, NoPiiCheck):
                continue
            for a, contact in enumerate(check.allow):
                problem = allowed_contact_problem(contact)
                if problem is not None:
                    where = f"case {case.id!r}, field checks[{c}].allow[{a}]"
                    problems.append(f"{where}: {contact!r}: {problem}")
    return problems


def load_eval_set(path: Path) -> EvalSet:
    """Read an eval set from YAML (`.yaml`, `.yml`) or JSONL (`.jsonl`).

    Raises EvalSetError naming the file, the case id (or its position) and
    the field for anything wrong: unreadable file, bad YAML/JSON, a missing
    or invalid field, a bad regex, duplicate ids.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise EvalSetError(f"{path}: cannot read eval set ({exc.strerror or exc})") from None
    if size > MAX_FILE_BYTES:
        raise EvalSetError(f"{path}: {size} bytes; an eval set file is at most {MAX_FILE_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalSetError(f"{path}: cannot read eval set ({exc})") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        raw = _parse_yaml(path, text)
    elif suffix == ".jsonl":
        raw = {"name": _name_from_stem(path.stem), "cases": _parse_jsonl(path, text)}
    else:
        raise EvalSetError(f"{path}: unknown eval set format {suffix!r} (use .yaml or .jsonl)")
    return _validate(path, raw)


def _parse_yaml(path: Path, text: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EvalSetError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise EvalSetError(f"{path}: an eval set is a mapping with `name` and `cases`")
    # `x-` keys hold YAML anchors that cases share (as in compose files).
    return {k: v for k, v in raw.items() if not (isinstance(k, str) and k.startswith("x-"))}


def _parse_jsonl(path: Path, text: str) -> list[Any]:
    cases: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cases.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{path}: line {number} is not valid JSON: {exc.msg}") from None
    return cases


def _name_from_stem(stem: str) -> str:
    name = regex.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:128]
    return name if name and name[0] not in ".-" else f"set_{name}"


def _validate(path: Path, raw: dict[str, Any]) -> EvalSet:
    try:
        eval_set = EvalSet.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _where(raw, first["loc"])
        raise EvalSetError(f"{path}: {where}: {first['msg']}") from None
    problems = contact_problems(eval_set)
    if problems:
        raise EvalSetError(f"{path}: {problems[0]}")
    return eval_set


def _where(raw: Mapping[str, Any], loc: Sequence[int | str]) -> str:
    """`case 'refund-01', field checks[0].pattern` from a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int):
        cases = raw.get("cases")
        case = cases[loc[1]] if isinstance(cases, list) and loc[1] < len(cases) else None
        case_id = case.get("id") if isinstance(case, Mapping) else None
        who = f"case {case_id!r}" if isinstance(case_id, str) else f"case #{loc[1] + 1}"
        field = _field(loc[2:])
        return f"{who}, field {field}" if field else who
    return f"field {_field(loc) or '(top level)'}"


def _field(loc: Sequence[int | str]) -> str:
    out = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (isinstance(previous, int) and part in _CHECK_KINDS):
            # A discriminated union puts the tag (`contains`) after the index.
            out += f".{part}" if out else str(part)
        previous = part
    return out


_CHECK_KINDS = frozenset({"contains", "not_contains", "cites", "no_pii", "output_equals"})
