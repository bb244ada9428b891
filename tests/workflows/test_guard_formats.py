"""A guard's verdict on formatted strings is the same on every worker,
whichever of jsonschema's optional format packages a worker image has."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.chain_spec import GuardRules
from core.json_formats import FORMAT_CHECKER
from workflows import guards

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = {
    "type": "object",
    "properties": {"at": {"type": "string", "format": "date-time"}, "link": {"format": "uri"}},
}
CASES = [
    ({"at": "2026-11-29T13:05:00Z", "link": "https://example.com/a?b=1"}, True),
    ({"at": "2026-11-29T13:05:00.25+01:00", "link": "mailto:ops@example.com"}, True),
    ({"at": "2026-11-29 13:05:00Z", "link": "urn:isbn:0451450523"}, True),
    ({"at": "2026-11-29T13:05:00", "link": "https://example.com"}, False),  # no zone
    ({"at": "2026-02-30T10:00:00Z", "link": "https://example.com"}, False),  # no such day
    ({"at": "yesterday", "link": "https://example.com"}, False),
    ({"at": "2026-11-29T13:05:00Z", "link": "not a uri"}, False),
    ({"at": "2026-11-29T13:05:00Z", "link": "/relative/path"}, False),
]

# Optional packages jsonschema's own FORMAT_CHECKER picks up when installed:
# here they reject everything, so a checker that uses them changes verdicts.
FAKE_OPTIONAL_PACKAGES = {
    "rfc3339_validator.py": "def validate_rfc3339(value):\n    return False\n",
    "rfc3987.py": "def parse(value, rule=None):\n    raise ValueError(value)\n",
}

PROBE = textwrap.dedent(
    """
    import json, sys
    from core.chain_spec import GuardRules
    from workflows import guards
    cases, schema, chorus = json.loads(sys.stdin.read())
    rules = GuardRules(json_schema=schema)
    print(json.dumps([
        not guards.check(json.dumps(value), rules, chorus_formats=chorus) for value in cases
    ]))
    """
)


def verdicts(chorus_formats: bool, extra_path: Path | None) -> list[bool]:
    path = [str(ROOT)] + ([str(extra_path)] if extra_path else [])
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        input=json.dumps([[value for value, _ in CASES], SCHEMA, chorus_formats]),
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(path), "PATH": ""},
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def optional_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("optional_format_packages")
    for name, source in FAKE_OPTIONAL_PACKAGES.items():
        (folder / name).write_text(source)
    return folder


@pytest.mark.parametrize(("value", "passes"), CASES)
def test_chorus_formats_give_the_expected_verdict(value: dict[str, str], passes: bool) -> None:
    rules = GuardRules(json_schema=SCHEMA)
    assert (not guards.check(json.dumps(value), rules)) is passes


def test_the_verdicts_do_not_depend_on_optional_packages(optional_packages: Path) -> None:
    expected = [passes for _, passes in CASES]
    assert verdicts(True, None) == expected
    assert verdicts(True, optional_packages) == expected


def test_jsonschema_s_own_checker_would_depend_on_them(optional_packages: Path) -> None:
    """The control: the checker runs recorded before the patch replay with
    does change its verdicts with the packages, which is why Chorus has its own."""
    assert verdicts(False, None) != verdicts(False, optional_packages)


def test_every_checked_format_is_registered() -> None:
    assert {"date-time", "date", "time", "email", "uri", "uuid", "ipv4", "ipv6", "hostname"} == set(
        FORMAT_CHECKER.checkers
    )
