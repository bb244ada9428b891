"""Eval sets load from YAML and JSONL, and every mistake in one is refused at
load time with the file, the case and the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.evals.spec import (
    MAX_PATTERN_CHARS,
    CitesCheck,
    ContainsCheck,
    EvalSet,
    EvalSetError,
    NoPiiCheck,
    OutputEqualsCheck,
    contact_problems,
    load_eval_set,
)

GOOD_CASE = {
    "id": "refund-01",
    "input": {"message": "How long do refunds take?"},
    "labels": {"category": "refund", "complexity": "simple"},
    "checks": [
        {"kind": "contains", "text": "5-10 business days"},
        {"kind": "contains", "pattern": r"original (payment|card)"},
        {"kind": "not_contains", "text": "store credit only"},
        {"kind": "cites", "documents": ["refunds.md"]},
        {"kind": "no_pii"},
        {"kind": "output_equals", "path": "steps.classify.output.category", "value": "refund"},
    ],
    "reference": "Refunds reach your card in 5-10 business days.",
}


def write_yaml(tmp_path: Path, cases: list[dict], name: str = "tickets") -> Path:
    path = tmp_path / "set.yaml"
    path.write_text(yaml.safe_dump({"name": name, "cases": cases}), encoding="utf-8")
    return path


def test_a_yaml_eval_set_loads_every_check_kind(tmp_path: Path) -> None:
    loaded = load_eval_set(write_yaml(tmp_path, [GOOD_CASE]))
    assert loaded.name == "tickets"
    kinds = [c.kind for c in loaded.cases[0].checks]
    assert kinds == ["contains", "contains", "not_contains", "cites", "no_pii", "output_equals"]
    no_pii = loaded.cases[0].checks[4]
    assert isinstance(no_pii, NoPiiCheck) and no_pii.kinds == ["email", "phone", "card"]
    assert loaded.case("refund-01").labels["category"] == "refund"


def test_a_jsonl_eval_set_is_named_after_its_file(tmp_path: Path) -> None:
    path = tmp_path / "my tickets.jsonl"
    second = {**GOOD_CASE, "id": "refund-02"}
    path.write_text(json.dumps(GOOD_CASE) + "\n\n" + json.dumps(second) + "\n", encoding="utf-8")
    loaded = load_eval_set(path)
    assert loaded.name == "my_tickets"
    assert [c.id for c in loaded.cases] == ["refund-01", "refund-02"]


def test_an_eval_set_survives_a_json_round_trip(tmp_path: Path) -> None:
    loaded = load_eval_set(write_yaml(tmp_path, [GOOD_CASE]))
    again = EvalSet.model_validate_json(loaded.model_dump_json())
    assert again == loaded
    assert isinstance(again.cases[0].checks[3], CitesCheck)
    assert isinstance(again.cases[0].checks[5], OutputEqualsCheck)


@pytest.mark.parametrize(
    ("check", "field", "words"),
    [
        ({"kind": "contains", "pattern": "(unclosed"}, "checks[0].pattern", "not a valid regex"),
        (
            {"kind": "contains", "pattern": "a" * (MAX_PATTERN_CHARS + 1)},
            "checks[0].pattern",
            "at most",
        ),
        ({"kind": "contains"}, "checks[0]", "exactly one of `text` or `pattern`"),
        ({"kind": "contains", "text": "x", "pattern": "x"}, "checks[0]", "exactly one"),
        ({"kind": "cites", "documents": []}, "checks[0].documents", "at least 1"),
        ({"kind": "no_pii", "kinds": ["ssn"]}, "checks[0].kinds[0]", "email"),
        ({"kind": "no_pii", "allow": ["call us"]}, "checks[0].allow", "not, as a whole"),
        ({"kind": "output_equals", "path": "a..b", "value": 1}, "checks[0].path", "pattern"),
        ({"kind": "mentions", "text": "x"}, "checks[0]", "does not match any of the expected"),
    ],
    ids=[
        "bad-regex",
        "long-regex",
        "neither",
        "both",
        "no-documents",
        "pii-kind",
        "pii-allow-not-a-contact",
        "path",
        "kind",
    ],
)
def test_a_bad_check_names_the_file_case_and_field(
    tmp_path: Path, check: dict, field: str, words: str
) -> None:
    path = write_yaml(tmp_path, [{**GOOD_CASE, "checks": [check]}])
    with pytest.raises(EvalSetError) as caught:
        load_eval_set(path)
    message = str(caught.value)
    assert str(path) in message
    assert "case 'refund-01'" in message
    assert f"field {field}" in message
    assert words in message


def test_a_case_without_an_id_is_named_by_position(tmp_path: Path) -> None:
    case = {k: v for k, v in GOOD_CASE.items() if k != "id"}
    path = write_yaml(tmp_path, [GOOD_CASE, case])
    with pytest.raises(EvalSetError, match=r"case #2, field id: Field required"):
        load_eval_set(path)


def test_duplicate_case_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match="'refund-01' appears more than once"):
        load_eval_set(write_yaml(tmp_path, [GOOD_CASE, GOOD_CASE]))


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("set.yaml", "name: [unclosed", "not valid YAML"),
        ("set.yaml", "- just\n- a list\n", "a mapping with `name` and `cases`"),
        ("set.yaml", "name: empty\ncases: []\n", "field cases"),
        ("set.jsonl", '{"id": "a", "input": {}}\n{not json\n', "line 2 is not valid JSON"),
        ("set.csv", "id,input\n", "unknown eval set format '.csv'"),
    ],
    ids=["yaml-syntax", "not-a-mapping", "no-cases", "jsonl-syntax", "format"],
)
def test_unreadable_eval_sets_say_what_is_wrong(
    tmp_path: Path, name: str, content: str, words: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalSetError) as caught:
        load_eval_set(path)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_a_missing_file_is_an_eval_set_error(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match="cannot read eval set"):
        load_eval_set(tmp_path / "nowhere.yaml")


def test_allow_entries_are_checked_on_load_not_when_an_eval_set_crosses_temporal() -> None:
    """An evaluation in flight deserialises its eval set on replay: a rule on
    allow entries lives in `contact_problems` (load and prepare), so it never
    refuses a payload that was accepted before it existed."""
    check = {"kind": "no_pii", "allow": ["1-800-555-0142", "our front desk"]}
    eval_set = EvalSet.model_validate({"name": "s", "cases": [{**GOOD_CASE, "checks": [check]}]})

    problems = contact_problems(eval_set)

    assert len(problems) == 1
    assert problems[0].startswith("case 'refund-01', field checks[0].allow[1]: 'our front desk'")


def test_checks_are_frozen() -> None:
    check = ContainsCheck(text="30 days")
    with pytest.raises(ValueError, match="frozen"):
        check.text = "60 days"  # type: ignore[misc]


def test_x_keys_hold_shared_anchors(tmp_path: Path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(
        "x-pii: &pii {kind: no_pii, allow: [1-800-555-0142]}\n"
        "name: t\ncases:\n  - {id: a, input: {message: m}, checks: [*pii]}\n",
        encoding="utf-8",
    )
    (check,) = load_eval_set(path).cases[0].checks
    assert isinstance(check, NoPiiCheck) and check.allow == ["1-800-555-0142"]


SHIPPED = Path(__file__).resolve().parents[2] / "evals" / "support_tickets.yaml"
HELP_CENTER = SHIPPED.parents[1] / "chains" / "knowledge" / "help_center"
CATEGORIES = {"refund", "return", "shipping", "order", "account", "payment", "product", "other"}


def test_the_shipped_eval_set_covers_what_the_flagship_must_handle() -> None:
    tickets = load_eval_set(SHIPPED)
    assert len(tickets.cases) >= 60
    labels = [c.labels for c in tickets.cases]
    assert {lab["category"] for lab in labels} == CATEGORIES
    for category in CATEGORIES:
        kinds = {lab["complexity"] for lab in labels if lab["category"] == category}
        assert kinds == {"simple", "complex"}, category
    assert sum(1 for lab in labels if lab["answerable"] == "no") >= 6
    articles = {p.name for p in HELP_CENTER.glob("*.md")}
    for case in tickets.cases:
        kinds = {check.kind for check in case.checks}
        assert "no_pii" in kinds, case.id
        answered = case.labels["answerable"] == "yes"
        assert (case.labels.get("source") in articles) == answered, case.id
        if answered and case.labels["complexity"] == "complex":
            assert "cites" in kinds, case.id
        for check in case.checks:
            if isinstance(check, CitesCheck):
                assert set(check.documents) <= articles, case.id
            if isinstance(check, OutputEqualsCheck):
                assert check.value == case.labels["category"], case.id
