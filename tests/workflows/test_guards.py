"""Guard checkers: every rule passes and fails where it should, PII detectors
hold up against look-alikes, and the checks run inside the workflow sandbox."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.chain_spec import ChainSpec, GuardRules, GuardStep

with workflow.unsafe.imports_passed_through():
    # GuardProbe below makes the sandbox re-import this module: the worker's
    # assembly (converter, encryption's native bindings, settings reading the
    # file system) is the test's own, not the workflow's.
    from worker.plugin import PASSTHROUGH_MODULES, sandbox_runner
from workflows.citations import cited_ids, retrieved_ids_of
from workflows.guards import (
    MAX_CHECKED_CHARS,
    InvalidGuardRule,
    Violation,
    check,
    describe,
    output_text,
    pattern_problem,
)
from workflows.pii import find_pii, redact_pii

RETRIEVED = ["refunds.md#2", "shipping.md#0", "Refund policy.md#4"]
ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["refund", "shipping", "other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["category", "confidence"],
    "additionalProperties": False,
}


def rules(**fields: Any) -> GuardRules:
    return GuardRules.model_validate(fields)


def violated(output: Any, guard: GuardRules, **kwargs: Any) -> list[str]:
    return [v.rule for v in check(output, guard, **kwargs)]


# -- every rule, passing and failing ---------------------------------------------------

# (id, rules, output, violated rules): one row per outcome of each rule.
RULE_CASES: list[tuple[str, dict[str, Any], Any, list[str]]] = [
    ("schema ok: dict", {"json_schema": ORDER_SCHEMA}, {"category": "refund", "confidence": 1}, []),
    (
        "schema ok: JSON text",
        {"json_schema": ORDER_SCHEMA},
        '{"category": "shipping", "confidence": 0.4}',
        [],
    ),
    (
        "schema ok: fenced JSON text",
        {"json_schema": ORDER_SCHEMA},
        '```json\n{"category": "other", "confidence": 0}\n```',
        [],
    ),
    ("schema ok: string schema over plain text", {"json_schema": {"type": "string"}}, '"hi"', []),
    (
        "schema fails: dict",
        {"json_schema": ORDER_SCHEMA},
        {"category": "refund", "confidence": 2},
        ["json_schema"],
    ),
    (
        "schema fails: not JSON",
        {"json_schema": ORDER_SCHEMA},
        "Sure! Category: refund",
        ["json_schema"],
    ),
    (
        "schema fails: JSON of the wrong type",
        {"json_schema": ORDER_SCHEMA},
        "[1, 2]",
        ["json_schema"],
    ),
    ("required ok", {"required_patterns": [r"(?i)order\s+#?\d+"]}, "Your ORDER 1001 ships", []),
    (
        "required fails",
        {"required_patterns": [r"(?i)order\s+#?\d+"]},
        "It ships",
        ["required_pattern"],
    ),
    (
        "required: each pattern counts",
        {"required_patterns": ["a", "b", "c"]},
        "a only",
        ["required_pattern", "required_pattern"],
    ),
    ("forbidden ok", {"forbidden_patterns": [r"(?i)\bguarantee"]}, "We will try our best", []),
    (
        "forbidden fails",
        {"forbidden_patterns": [r"(?i)\bguarantee"]},
        "We GUARANTEE a refund",
        ["forbidden_pattern"],
    ),
    (
        "forbidden over structured output reads its JSON",
        {"forbidden_patterns": ['"internal_note"']},
        {"reply": "hi", "internal_note": "x"},
        ["forbidden_pattern"],
    ),
    ("email ok", {"pii": ["email"]}, "Write to support via the form", []),
    ("email fails", {"pii": ["email"]}, "Write to jane.doe@example.com", ["pii_email"]),
    ("phone ok", {"pii": ["phone"]}, "Order NW-1001 ships in 2024", []),
    ("phone fails", {"pii": ["phone"]}, "Call +1 (555) 123-4567", ["pii_phone"]),
    ("card ok", {"pii": ["card"]}, "Card ending 1111", []),
    ("card fails", {"pii": ["card"]}, "Card 4111 1111 1111 1111", ["pii_card"]),
    (
        "only the listed PII kinds are checked",
        {"pii": ["card"]},
        "jane@example.com, 555-123-4567",
        [],
    ),
    (
        "all PII kinds at once",
        {"pii": ["card", "email", "phone"]},
        "jane@example.com, 555-123-4567, 5555 5555 5555 4444",
        ["pii_email", "pii_phone", "pii_card"],
    ),
    ("min_length ok", {"min_length": 5}, "hello", []),
    ("min_length fails", {"min_length": 6}, "hello", ["min_length"]),
    ("max_length ok", {"max_length": 5}, "héllo", []),
    ("max_length fails", {"max_length": 4}, "héllo", ["max_length"]),
    ("max_length of structured output counts its JSON", {"max_length": 7}, {"a": 1}, []),
    ("max_length of structured output fails", {"max_length": 6}, {"a": 1}, ["max_length"]),
    ("citations ok", {"citations_from": "docs"}, "Refunds take 5 days [refunds.md#2].", []),
    (
        "citations ok: several in one bracket, names with spaces",
        {"citations_from": "docs"},
        "See [refunds.md#2; Refund policy.md#4] and [shipping.md#0].",
        [],
    ),
    (
        "citation unknown",
        {"citations_from": "docs"},
        "Per [refunds.md#2] and [warranty.md#1].",
        ["citation_unknown"],
    ),
    ("citation missing", {"citations_from": "docs"}, "Refunds take 5 days.", ["citation_missing"]),
    (
        "numbered references are not citations",
        {"citations_from": "docs"},
        "Refunds take 5 days [1].",
        ["citation_missing"],
    ),
    (
        "only unknown citations: unknown, not missing",
        {"citations_from": "docs"},
        "See [faq.md#9].",
        ["citation_unknown"],
    ),
    ("no rules: anything passes", {}, {"anything": [1, 2]}, []),
]


@pytest.mark.parametrize(
    ("guard", "output", "expected"),
    [pytest.param(rules(**r), out, exp, id=case) for case, r, out, exp in RULE_CASES],
)
def test_rule(guard: GuardRules, output: Any, expected: list[str]) -> None:
    assert violated(output, guard, retrieved_ids=RETRIEVED) == expected


def test_violations_come_in_a_fixed_order_and_repeat_exactly() -> None:
    guard = rules(
        json_schema={"type": "object"},
        required_patterns=["thanks"],
        forbidden_patterns=["refund"],
        pii=["card", "phone", "email"],
        min_length=1000,
        citations_from="docs",
    )
    text = "refund to a@b.io, call 555-123-4567, card 4111-1111-1111-1111 [faq.md#1]"
    first = check(text, guard, retrieved_ids=RETRIEVED)
    assert [v.rule for v in first] == [
        "json_schema",
        "required_pattern",
        "forbidden_pattern",
        "pii_email",
        "pii_phone",
        "pii_card",
        "min_length",
        "citation_unknown",
    ]
    assert check(text, guard, retrieved_ids=list(reversed(RETRIEVED))) == first


PUBLISHED = ["1-800-555-0142", "no-reply@larkspur.example"]


@pytest.mark.parametrize(
    "quoted",
    [
        "Call us on 1-800-555-0142 (Mon-Fri).",
        "Call us on 1 (800) 555-0142.",
        "Call us on +1 800 555 0142.",
        "Our emails come from No-Reply@Larkspur.example.",
    ],
)
def test_pii_allow_lets_a_reply_quote_the_published_contacts(quoted: str) -> None:
    assert violated(quoted, rules(pii=["email", "phone", "card"])) != []
    assert violated(quoted, rules(pii=["email", "phone", "card"], pii_allow=PUBLISHED)) == []


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Call 1-800-555-0142 or your rep on 1-800-555-0143.", "pii_phone"),
        ("Call 1-800-555-0142, or we call you back on 303-555-0147.", "pii_phone"),
        ("Write no-reply@larkspur.example or jane.doe@example.com.", "pii_email"),
        ("Write to reply@larkspur.example.", "pii_email"),
        ("Card 4111 1111 1111 1111 and line 1-800-555-0142.", "pii_card"),
    ],
)
def test_pii_allow_skips_only_the_published_contacts(text: str, rule: str) -> None:
    found = check(text, rules(pii=["email", "phone", "card"], pii_allow=PUBLISHED))
    assert [v.rule for v in found] == [rule]
    assert " 2 " not in found[0].message  # the other contact only, not the published one too


def test_pii_allow_applies_to_structured_outputs() -> None:
    output = {"reply": "Call 1-800-555-0142.", "notes": ["customer: 303-555-0147"]}
    found = check(output, rules(pii=["phone"], pii_allow=PUBLISHED))
    assert [v.message for v in found] == ["the output contains a phone number (at $.notes[0])"]


@pytest.mark.parametrize("chain", ["support_triage", "support_single_strong", "support_cascade"])
def test_support_chains_let_the_reply_give_the_help_center_contacts(chain: str) -> None:
    """The flagship and its variants refuse a customer's personal data in the
    reply, not the store's own phone line ("Are you open on Thanksgiving?")."""
    root = Path(__file__).resolve().parents[2]  # not at import: the sandbox re-imports this
    spec = ChainSpec.model_validate(yaml.safe_load((root / "chains" / f"{chain}.yaml").read_text()))
    guard = next(s for s in spec.steps if isinstance(s, GuardStep) and s.rules.pii)
    reply = (
        "We are closed on Thanksgiving. Chat is open the next day, or call us on "
        "1-800-555-0142 [contact_support#0]. Our emails come from no-reply@larkspur.example."
    )
    text_rules = guard.rules.model_copy(update={"citations_from": None})
    assert violated(reply, text_rules) == []
    leaked = reply + " We will call you back on 303-555-0147."
    assert violated(leaked, text_rules) == ["pii_phone"]


def test_messages_say_what_is_wrong_without_quoting_pii() -> None:
    text = "Mail jane.doe@example.com or jd@example.org; call +44 20 7946 0958."
    guard = rules(pii=["email", "phone"], forbidden_patterns=[r"call"], max_length=20)
    by_rule = {v.rule: v.message for v in check(text, guard)}
    assert by_rule["pii_email"] == "the output contains 2 email addresses (at characters 5, 29)"
    assert by_rule["pii_phone"] == "the output contains a phone number (at character 50)"
    assert by_rule["forbidden_pattern"] == (
        "the output matches the forbidden pattern 'call': 'call' at character 45"
    )
    assert by_rule["max_length"] == "the output is 67 characters long; at most 20 are allowed"
    for message in by_rule.values():
        assert "jane" not in message and "7946" not in message


def test_pii_in_structured_output_is_found_in_its_strings_and_numbers() -> None:
    """Each string and number is read as is (in JSON text `\\n` would glue a
    number to the `n`) and the message names its JSON path."""
    output = {
        "reply": "Call us:\n555-123-4567",
        "cc": ["ops", "jane@example.com"],
        "meta": {"card": 4111111111111111, "order id": "NW-1001"},
        "long": "x" * 50 + " a@b.io",
    }
    found = check(output, rules(pii=["email", "phone", "card"]))
    assert [v.message for v in found] == [
        "the output contains 2 email addresses (at $.cc[1], $.long (character 51))",
        "the output contains a phone number (at $.reply)",
        "the output contains a payment card number (at $.meta.card)",
    ]
    assert violated({"order id": "NW-1001", "total": 129.99}, rules(pii=["phone", "card"])) == []


def test_schema_violations_name_the_json_path_and_are_capped() -> None:
    [v] = check({"category": "refund", "confidence": "high"}, rules(json_schema=ORDER_SCHEMA))
    assert v == Violation("json_schema", "$.confidence: 'high' is not of type 'number'")
    schema = {"type": "array", "items": {"type": "integer"}}
    many = check(["x"] * 25, rules(json_schema=schema))
    assert len(many) == 11
    assert many[-1] == Violation("json_schema", "... and 15 more schema errors")
    [bad] = check("{'single': 'quotes'}", rules(json_schema=schema))
    assert bad.message.startswith("the output is not valid JSON (Expecting property name")


def test_schema_formats_are_checked() -> None:
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    assert violated({"email": "a@b.io"}, rules(json_schema=schema)) == []
    assert violated({"email": "nope"}, rules(json_schema=schema)) == ["json_schema"]


def test_schema_with_local_refs_resolves() -> None:
    schema = {
        "$defs": {"id": {"type": "string", "pattern": "^NW-[0-9]+$"}},
        "type": "array",
        "items": {"$ref": "#/$defs/id"},
    }
    assert violated(["NW-1001"], rules(json_schema=schema)) == []
    [v] = check(["NW-1001", "1002"], rules(json_schema=schema))
    assert v.message == "$[1]: '1002' does not match '^NW-[0-9]+$'"


def test_schema_with_a_remote_ref_is_never_fetched() -> None:
    """Deterministic and offline: a `$ref` to a live local server is refused
    as unresolvable, and the server sees no request."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = json.dumps({"type": "object"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/schema.json"
            with pytest.raises(InvalidGuardRule, match="cannot be applied"):
                check({}, rules(json_schema={"$ref": url}))
        finally:
            server.shutdown()
    assert requests == []


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(?:\w+\s*)*!", r"(a|b+)*c", r"(a*)*"])
def test_a_pattern_that_can_backtrack_exponentially_is_refused(pattern: str) -> None:
    problem = pattern_problem(pattern)
    assert problem is not None and "exponential time" in problem
    with pytest.raises(InvalidGuardRule, match="exponential time"):
        check("a" * 40 + "!", rules(forbidden_patterns=[pattern]))


@pytest.mark.parametrize(
    "pattern",
    [r"(?>a+)+$", r"(a++)+$", r"(\d{1,3}\.){3}\d+", r"(?:ab)+", r"\[[^\]]+#\d+\]", r"(?:a+){2,5}"],
)
def test_safe_repeats_are_accepted(pattern: str) -> None:
    assert pattern_problem(pattern) is None


def test_a_pattern_that_is_not_a_regex_is_refused() -> None:
    assert pattern_problem(r"\d+") is None
    assert pattern_problem("(") == (
        "not a valid regular expression: missing ), unterminated subpattern at position 0"
    )
    with pytest.raises(InvalidGuardRule, match="not a valid regular expression"):
        check("x", rules(forbidden_patterns=["[z-a]"]))


# -- text of the output -----------------------------------------------------------------


class Reply(BaseModel):
    text: str
    tags: list[str]


@pytest.mark.parametrize(
    ("output", "text"),
    [
        ("plain \n text", "plain \n text"),
        ({"b": 1, "a": ["é", None, True]}, '{"a":["é",null,true],"b":1}'),
        ([1, 2.5], "[1,2.5]"),
        (None, "null"),
        (Reply(text="hi", tags=["x"]), '{"tags":["x"],"text":"hi"}'),
        ({"nested": Reply(text="hi", tags=[])}, '{"nested":{"tags":[],"text":"hi"}}'),
    ],
)
def test_output_text_is_canonical_json_for_structured_outputs(output: Any, text: str) -> None:
    assert output_text(output) == text


def test_text_past_the_scan_cap_fails_closed() -> None:
    """Patterns, PII and citations read only the first MAX_CHECKED_CHARS
    characters; what lies beyond cannot be shown clean, so those rules fail."""
    clean = "word " * (MAX_CHECKED_CHARS // 5)
    long_text = clean + "tail [refunds.md#2]"
    guard = rules(
        forbidden_patterns=["secret"],
        required_patterns=["word"],
        pii=["email"],
        citations_from="docs",
    )
    assert violated(clean, guard, retrieved_ids=RETRIEVED) == ["citation_missing"]
    found = check(long_text, guard, retrieved_ids=RETRIEVED)
    assert [v.rule for v in found] == [
        "forbidden_pattern",
        "pii_email",
        "citation_unknown",
        "citation_missing",
    ]
    assert f"only the first {MAX_CHECKED_CHARS} are checked" in found[0].message
    assert violated(long_text, rules(max_length=10 * MAX_CHECKED_CHARS)) == []
    many = {"a": ["x" * 1000] * (MAX_CHECKED_CHARS // 1000), "b": "tail"}
    assert violated(many, rules(pii=["card"])) == ["pii_card"]
    assert violated({"a": many["a"]}, rules(pii=["card"])) == []


# -- PII detectors -----------------------------------------------------------------------

# (kind, text, the detected substrings)
PII_DETECTED: list[tuple[str, str, list[str]]] = [
    ("email", "mail jane.doe@example.com now", ["jane.doe@example.com"]),
    ("email", "J.Smith+tag@mail.example.co.uk.", ["J.Smith+tag@mail.example.co.uk"]),
    ("email", "email: x_y@ex-ample.org, a@b.io", ["x_y@ex-ample.org", "a@b.io"]),
    ("email", "<mailto:ops@corp.example.com>", ["ops@corp.example.com"]),
    ("phone", "Call me at +1 555-123-4567.", ["+1 555-123-4567"]),
    ("phone", "UK: +44 20 7946 0958", ["+44 20 7946 0958"]),
    ("phone", "FR +33 6 12 34 56 78", ["+33 6 12 34 56 78"]),
    ("phone", "E.164 +15551234567", ["+15551234567"]),
    ("phone", "DE +49 (0)30 12345678", ["+49 (0)30 12345678"]),
    ("phone", "NL 0031 20 123 4567", ["0031 20 123 4567"]),
    ("phone", "US (555) 123-4567", ["(555) 123-4567"]),
    ("phone", "US 555-123-4567 or 555.123.4567", ["555-123-4567", "555.123.4567"]),
    ("phone", "US 1 555 123 4567", ["1 555 123 4567"]),
    ("phone", "FR 06 12 34 56 78", ["06 12 34 56 78"]),
    ("phone", "DE 030-1234-5678", ["030-1234-5678"]),
    ("phone", "UK (020) 7946 0958", ["(020) 7946 0958"]),
    ("phone", "phone: 0612345678", ["0612345678"]),
    ("phone", "Call me on 5551234567!", ["5551234567"]),
    ("card", "Visa 4111 1111 1111 1111", ["4111 1111 1111 1111"]),
    ("card", "MC 5555-5555-5555-4444", ["5555-5555-5555-4444"]),
    ("card", "Amex 3782 822463 10005", ["3782 822463 10005"]),
    ("card", "Discover 6011111111111117.", ["6011111111111117"]),
    ("card", "4111 1111 1111 1111 12/25", ["4111 1111 1111 1111"]),
    ("card", "19 digits 6011 0000 0000 0000 001", ["6011 0000 0000 0000 001"]),
    ("card", "13 digits 4222222222222", ["4222222222222"]),
]

# (kind, text): look-alikes that must not be flagged.
PII_NOT_DETECTED: list[tuple[str, str]] = [
    ("email", "icon@2x.png and logo@3x.jpg"),
    ("email", "ping @someone on chat"),
    ("email", "user@localhost"),
    ("email", "foo@bar"),
    ("email", "decorators like @app.route are code"),
    ("phone", "Order NW-1001 shipped"),
    ("phone", "Orders NW-1001, NW-1002 and NW-555-123-4567"),
    ("phone", "In 2023 we sold 1999 units"),
    ("phone", "years 2019 2020 2021 2022"),
    ("phone", "It costs $1,299.99 or €1 299 000"),
    ("phone", "Order 123456789012"),
    ("phone", "ticket #555-123-4567"),
    ("phone", "on 2024-01-15 10:30 or 05/06/2024 12:30"),
    ("phone", "IP 192.168.100.200"),
    ("phone", "version 3.11.4 build 20240115"),
    ("phone", "ref ORD-2024-000123456"),
    ("phone", "timestamp 1700000000"),
    ("phone", "ISBN 978-3-16-148410-0"),
    ("phone", "Visa 4111 1111 1111 1111"),
    ("phone", "call back in 2 days, between 10 and 12"),
    ("card", "4111 1111 1111 1112 (fails Luhn)"),
    ("card", "1234 5678 9012 3456"),
    ("card", "order 4111111111111111x"),
    ("card", "phone +1 555 123 4567"),
    ("card", "short 4111 1111 1111"),
    ("card", "SKU-4111111111111111"),
    ("card", "a 20-digit id 41111111111111111111"),
    ("card", "card ending 1111, expires 12/25"),
]


@pytest.mark.parametrize(
    ("kind", "text", "found"),
    [pytest.param(k, t, f, id=f"{k}: {t}") for k, t, f in PII_DETECTED],
)
def test_pii_is_detected(kind: Any, text: str, found: list[str]) -> None:
    assert [text[a:b] for a, b in find_pii(text, kind)] == found
    assert violated(text, rules(pii=[kind])) == [f"pii_{kind}"]


@pytest.mark.parametrize(
    ("kind", "text"), [pytest.param(k, t, id=f"{k}: {t}") for k, t in PII_NOT_DETECTED]
)
def test_pii_look_alikes_are_not_flagged(kind: Any, text: str) -> None:
    assert find_pii(text, kind) == []
    assert violated(text, rules(pii=[kind])) == []


def test_redact_pii() -> None:
    text = "Reach jo@ex.com or +1 555 123 4567, card 4111 1111 1111 1111. Order NW-1001."
    assert redact_pii(text) == "Reach [email] or [phone], card [card]. Order NW-1001."
    assert redact_pii(text, ["email"]) == (
        "Reach [email] or +1 555 123 4567, card 4111 1111 1111 1111. Order NW-1001."
    )
    assert redact_pii("Amex 3782 822463 10005", ["card", "phone"]) == "Amex [card]"
    assert redact_pii("nothing here") == "nothing here"
    with pytest.raises(ValueError, match=r"unknown PII kinds \['ssn'\]"):
        redact_pii("x", ["ssn"])  # type: ignore[list-item]


# -- citations ---------------------------------------------------------------------------


def test_cited_ids_in_order_of_first_use() -> None:
    text = (
        "See [refunds.md#2] and [faq.md#0; shipping.md#12], again [refunds.md#2], "
        "not [1], [item #2], [a](b#3) or [^1]; but [ Refund policy.md#4 ]."
    )
    assert cited_ids(text) == ["refunds.md#2", "faq.md#0", "shipping.md#12", "Refund policy.md#4"]


def test_unknown_citations_are_each_named_once() -> None:
    out = "[warranty.md#1] [refunds.md#2] [warranty.md#1] [faq.md#3]"
    found = check(out, rules(citations_from="docs"), retrieved_ids=RETRIEVED)
    assert [v.message for v in found] == [
        f"the output cites [{cid}], which step 'docs' did not retrieve "
        "(retrieved: Refund policy.md#4, refunds.md#2, shipping.md#0)"
        for cid in ("warranty.md#1", "faq.md#3")
    ]


@pytest.mark.parametrize("retrieved", [None, []])
def test_nothing_retrieved_makes_every_citation_unknown(retrieved: list[str] | None) -> None:
    found = check("[refunds.md#2]", rules(citations_from="docs"), retrieved_ids=retrieved)
    assert found == [
        Violation(
            "citation_unknown",
            "the output cites [refunds.md#2], which step 'docs' did not retrieve "
            "(it retrieved nothing)",
        )
    ]


def test_retrieved_ids_of_a_retrieve_output() -> None:
    output = {
        "query": "refund",
        "collection": "help",
        "ranking": "fts",
        "passages": [{"id": "refunds.md#2", "text": "..."}, {"id": "faq.md#0"}, {"text": "x"}],
    }
    assert retrieved_ids_of(output) == ["refunds.md#2", "faq.md#0"]
    assert retrieved_ids_of("not a retrieval") == []
    assert retrieved_ids_of({"passages": "nope"}) == []


# -- describe ------------------------------------------------------------------------------


def test_describe_gives_one_line_per_violation() -> None:
    found = check(
        "We guarantee it", rules(forbidden_patterns=["guarantee"], min_length=100), retrieved_ids=[]
    )
    assert describe(found) == (
        "- forbidden_pattern: the output matches the forbidden pattern 'guarantee': "
        "'guarantee' at character 3\n"
        "- min_length: the output is 15 characters long; at least 100 are required"
    )
    assert describe([]) == ""
    assert describe([Violation("json_schema", "two\nlines")]) == "- json_schema: two lines"
    assert str(found[0]) == describe(found[:1])[2:]


# -- inside the workflow sandbox ---------------------------------------------------------


class GuardProbeInput(BaseModel):
    output: Any
    rules: GuardRules
    retrieved_ids: list[str] | None = None


@workflow.defn(name="GuardProbe")
class GuardProbeWorkflow:
    """The checks as the chain workflow runs them: inside the sandbox."""

    @workflow.run
    async def run(self, probe: GuardProbeInput) -> list[str]:
        found = check(probe.output, probe.rules, retrieved_ids=probe.retrieved_ids)
        return [str(v) for v in found] + [redact_pii(describe(found))]


def test_the_worker_passes_guards_and_jsonschema_through_the_sandbox() -> None:
    modules = ("workflows.guards", "workflows.pii", "workflows.citations", "jsonschema")
    for module in (*modules, "referencing", "rpds"):
        assert module in PASSTHROUGH_MODULES


async def test_guards_run_inside_the_workflow_sandbox(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    probe = GuardProbeInput(
        output='{"category": "refund", "confidence": 7}',
        rules=rules(
            json_schema=ORDER_SCHEMA,
            forbidden_patterns=["refund"],
            pii=["email"],
            citations_from="docs",
        ),
        retrieved_ids=RETRIEVED,
    )
    async with Worker(
        temporal_env.client,
        task_queue=task_queue,
        workflows=[GuardProbeWorkflow],
        workflow_runner=sandbox_runner(),
    ):
        result = await temporal_env.client.execute_workflow(
            GuardProbeWorkflow.run,
            probe,
            id=f"guard-probe-{uuid.uuid4()}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
    expected = check(probe.output, probe.rules, retrieved_ids=probe.retrieved_ids)
    assert [v.rule for v in expected] == ["json_schema", "forbidden_pattern", "citation_missing"]
    assert result == [str(v) for v in expected] + [describe(expected)]
