"""Deterministic scoring of one case's answer against its checks.

Pure, no I/O: the scoring activity calls `score_case` on what the engine
gathered from a finished child run. Answers are model output, so nothing here
trusts them: a missing or non-string answer scores as empty text, a huge one
is read up to `MAX_SCAN_CHARS`, NUL characters and lone surrogates are text
like any other, and a check pattern that runs past its timeout fails its
check (saying so) instead of hanging the worker. Details never quote the
answer, only the check, so personal data in an answer stays out of the
report and the database.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core.citations import cited_ids
from core.evals.results import CaseRunFacts, CaseScore, CheckResult
from core.evals.spec import (
    MAX_SCAN_CHARS,
    REGEX_TIMEOUT_S,
    CitesCheck,
    ContainsCheck,
    EvalCase,
    NoPiiCheck,
    NotContainsCheck,
    OutputEqualsCheck,
    compile_pattern,
)
from core.pii import PII_NAMES, find_pii

__all__ = ["COMPLETED", "answer_text_of", "score_case"]

COMPLETED = "completed"
"""The one run status whose answer is scored; any other fails every check."""

_SHOWN_CHARS = 80
"""Values quoted in a detail are cut to this length."""

# Curly quotes, dashes and no-break spaces as a model writes them, to the
# plain characters eval-set authors type.
_PLAIN = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00a0": " ",
        "\u202f": " ",
        "\u2009": " ",
    }
)


def score_case(case: EvalCase, facts: CaseRunFacts) -> CaseScore:
    """Score one run of one variant on one case.

    The first result says whether the run completed; a run that did not
    fails every check with its status and error type in the detail. The case
    passes only when the run completed and every check passed.
    """
    completed = facts.status == COMPLETED
    outcome = _run_outcome(facts)
    results = [CheckResult(kind="completed", passed=completed, detail=outcome)]
    if completed:
        text = _normalise(answer_text_of(facts))
        results += [_check(check, text, facts) for check in case.checks]
    else:
        results += [
            CheckResult(kind=check.kind, passed=False, detail=f"not scored: {outcome}")
            for check in case.checks
        ]
    return CaseScore(
        case_id=case.id,
        variant=facts.variant,
        run_id=facts.run_id,
        passed=all(r.passed for r in results),
        checks=results,
        cost_usd=_amount(facts.cost_usd),
        latency_s=_amount(facts.latency_s),
        approvals_requested=max(0, int(facts.approvals_requested or 0)),
        escalated=bool(facts.escalated),
        error_type=facts.error_type,
        labels=dict(case.labels),
    )


def answer_text_of(facts: CaseRunFacts) -> str:
    """The answer a customer would read: `answer_text`, else the run's
    `output` value as text; at most `MAX_SCAN_CHARS` characters."""
    text = facts.answer_text if isinstance(facts.answer_text, str) else ""
    if not text and isinstance(facts.output, Mapping):
        text = _as_text(facts.output.get("output"))
    return text[:MAX_SCAN_CHARS]


def _run_outcome(facts: CaseRunFacts) -> str:
    if facts.status == COMPLETED:
        return "the run completed"
    error = f", error {facts.error_type}" if facts.error_type else ""
    return f"the run did not complete (status {_shown(facts.status)}{error})"


def _check(check: Any, text: str, facts: CaseRunFacts) -> CheckResult:
    if isinstance(check, ContainsCheck):
        return _contains(check, text)
    if isinstance(check, NotContainsCheck):
        return _not_contains(check, text)
    if isinstance(check, CitesCheck):
        return _cites(check, text, facts.cited)
    if isinstance(check, NoPiiCheck):
        return _no_pii(check, text)
    if isinstance(check, OutputEqualsCheck):
        return _output_equals(check, facts.output)
    raise TypeError(f"no scorer for check kind {getattr(check, 'kind', type(check).__name__)!r}")


def _found(check: ContainsCheck | NotContainsCheck, text: str) -> bool | None:
    """Whether the check's text or pattern occurs; None when the pattern
    timed out (neither presence nor absence is shown)."""
    if check.text is not None:
        needle = _normalise(check.text)
        if check.ignore_case:
            return needle.casefold() in text.casefold()
        return needle in text
    assert check.pattern is not None  # the model allows exactly one of the two
    try:
        compiled = compile_pattern(check.pattern, check.ignore_case)
        return compiled.search(text, timeout=REGEX_TIMEOUT_S) is not None
    except TimeoutError:
        return None


def _contains(check: ContainsCheck, text: str) -> CheckResult:
    found = _found(check, text)
    if found is None:
        return CheckResult(kind=check.kind, passed=False, detail=_timed_out(check.shown))
    detail = f"says {check.shown}" if found else f"does not say {check.shown}"
    return CheckResult(kind=check.kind, passed=found, detail=_with_note(detail, check.note))


def _not_contains(check: NotContainsCheck, text: str) -> CheckResult:
    found = _found(check, text)
    if found is None:
        return CheckResult(kind=check.kind, passed=False, detail=_timed_out(check.shown))
    detail = f"says {check.shown}, which it must not" if found else f"does not say {check.shown}"
    return CheckResult(kind=check.kind, passed=not found, detail=_with_note(detail, check.note))


def _timed_out(shown: str) -> str:
    return f"pattern {shown} ran past {REGEX_TIMEOUT_S:g} s on this answer; simplify it"


def _cites(check: CitesCheck, text: str, cited: Iterable[Any]) -> CheckResult:
    documents = {_document(c) for c in _strings(cited)} | {_document(c) for c in cited_ids(text)}
    documents.discard("")
    wanted = [(d, _document(d)) for d in check.documents]
    missing = [shown for shown, key in wanted if key not in documents]
    if check.require == "any":
        passed = len(missing) < len(wanted)
        detail = (
            "cites one of " + ", ".join(shown for shown, _ in wanted)
            if passed
            else "cites none of " + ", ".join(missing)
        )
    else:
        passed = not missing
        detail = (
            "cites " + ", ".join(shown for shown, _ in wanted)
            if passed
            else "does not cite " + ", ".join(missing)
        )
    return CheckResult(kind=check.kind, passed=passed, detail=_with_note(detail, check.note))


def _document(citation: str) -> str:
    """`Refunds.md#2` and `refunds` both name the document `refunds`."""
    name = citation.split("#", 1)[0].strip().casefold()
    return name.removesuffix(".md")


def _no_pii(check: NoPiiCheck, text: str) -> CheckResult:
    # The same allow-list rule as a guard's `pii_allow` (core/pii.py).
    found = [(kind, len(find_pii(text, kind, check.allow))) for kind in check.kinds]
    found = [(kind, count) for kind, count in found if count]
    if not found:
        detail = "no " + ", ".join(PII_NAMES[k][1] for k in check.kinds)
        return CheckResult(kind=check.kind, passed=True, detail=detail)
    # Which kinds and how many, never the values themselves.
    named = ", ".join(
        f"{count} {PII_NAMES[kind][1]}" if count > 1 else PII_NAMES[kind][0]
        for kind, count in found
    )
    return CheckResult(
        kind=check.kind, passed=False, detail=_with_note(f"holds {named}", check.note)
    )


def _output_equals(check: OutputEqualsCheck, output: Any) -> CheckResult:
    found, value = _at_path(output, check.path.split("."))
    if not found:
        detail = f"the run's output has no {check.path}"
        return CheckResult(kind=check.kind, passed=False, detail=_with_note(detail, check.note))
    passed = _equal(value, check.value)
    detail = f"{check.path} is {_shown(value)}" + (
        "" if passed else f", expected {_shown(check.value)}"
    )
    return CheckResult(kind=check.kind, passed=passed, detail=_with_note(detail, check.note))


def _at_path(value: Any, path: Sequence[str]) -> tuple[bool, Any]:
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _equal(actual: Any, expected: str | int | float | bool | None) -> bool:
    """Strings trimmed and case-insensitive, numbers by value, booleans and
    null exactly (`true` never equals 1)."""
    if expected is None:
        return actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(expected, str):
        return isinstance(actual, str) and actual.strip().casefold() == expected.strip().casefold()
    if isinstance(actual, int | float):
        return math.isclose(float(actual), float(expected), rel_tol=1e-9, abs_tol=1e-12)
    return False


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)[: MAX_SCAN_CHARS + 1]
    except (TypeError, ValueError, RecursionError):
        return ""


def _strings(values: Iterable[Any]) -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        return []
    return [v for v in values if isinstance(v, str)]


def _normalise(text: str) -> str:
    """Curly quotes and dashes to plain ones, runs of whitespace to one space."""
    return " ".join(text.translate(_PLAIN).split())


def _amount(value: Any) -> float:
    """A cost or latency as a finite, non-negative number (0.0 otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else 0.0


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _with_note(detail: str, note: str | None) -> str:
    return f"{detail} ({note})" if note else detail
