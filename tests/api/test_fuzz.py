"""Property-based fuzz of the published OpenAPI schema (schemathesis): every
operation, requests generated from the schema (valid and not), sent to the
real server with a service key and with an admin key, on SQLite and on
PostgreSQL (the `api` fixtures are parametrized by backend). Every response
passes every check schemathesis has (`--checks all`): no 5xx, statuses,
content types, headers and bodies as the schema documents them, invalid data
refused, valid data accepted, authentication enforced (each success is
replayed without a key and with a wrong one). Every refusal uses the one
error shape.

Bounded: a few examples per operation, derandomized so a failure reproduces.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from api.app import create_app
from api.server import ApiServer
from core.settings import Settings
from tests.api.conftest import Keys, bearer

MAX_EXAMPLES = 12
ROLES = ("service", "admin")

SEMANTIC_422 = (
    "PUT /v1/chains/{name}",
    "POST /v1/keys",
    "PUT /v1/knowledge/{collection}",
    "POST /v1/knowledge/{collection}/documents",
    "POST /v1/knowledge/{collection}/files",
    "GET /v1/knowledge/{collection}/search",
    "POST /v1/evals",
)
"""Operations whose rules a JSON Schema cannot state, so a schema-valid
request may still be a 422 naming the rule: a chain spec's meaning (model
aliases, templates, step references; its YAML body is only `string` to the
schema), a key's role and scope together, a collection's embedding alias (the
model registry's), a text document's `?name=` (required for text bodies only),
an uploaded file that is not UTF-8 text, a search query with no word in it;
an eval set's rules (a check gives exactly one of `text` or `pattern`, a
pattern compiles, case ids are unique) and its case inputs, arbitrary JSON
within the input limits (64-bit integers, no NUL) that must match each
variant's `input_schema`. Its variants are schema-checked chain names (an
unknown one is a 404), tests/evals/test_api.py."""
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429"]
NEGATIVE_STATUSES = [
    *("400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx")
]
"""schemathesis's default for invalid data (a 5xx still fails not_a_server_error)."""
SIZE_413 = ("POST /v1/evals",)
"""Operations whose schema allows bodies far past the API's size limit (an
eval set of up to 5,000 cases; the tests' limit is 64 KB), so a generated
body, valid or not, may be refused with the documented 413 before it is read."""


def _statuses(name: str, base: list[str], *extra: str) -> list[str]:
    return [*base, *extra, *(["413"] if name in SIZE_413 else [])]


# The coverage phase enumerates schema-boundary cases exhaustively (thousands
# for the recursive chain spec): the bound here is random examples per operation.
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": MAX_EXAMPLES},
        # Valid data may be refused only as documented: never with a 5xx
        # (the schemathesis default tolerates one here; not_a_server_error
        # fails it anyway), with a 422 only where SEMANTIC_422 says why.
        "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES}},
        "operations": [
            {
                "include-name": name,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": _statuses(
                            name, POSITIVE_STATUSES, *(["422"] if name in SEMANTIC_422 else [])
                        )
                    },
                    "negative_data_rejection": {
                        "expected-statuses": _statuses(name, NEGATIVE_STATUSES)
                    },
                },
            }
            for name in dict.fromkeys([*SEMANTIC_422, *SIZE_413])
        ],
    }
)
# The schema the server publishes at /openapi.json (the same app builds it;
# the test below checks the served one matches), loaded at collection time so
# that each operation is a test of its own.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(_env_file=None)).openapi(), config=FUZZ_CONFIG
)

load_all_checks()
ALL_CHECKS = CHECKS.get_all()
"""`--checks all`: every check schemathesis registers (those that need a
stateful run, such as use_after_free, pass on single requests)."""


async def test_served_schema_is_the_fuzzed_one(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        served = (await http.get("/openapi.json")).json()
    assert served == create_app(Settings(_env_file=None)).openapi()
    assert len(served["paths"]) >= 10


def test_every_check_is_run() -> None:
    names = set(CHECKS.get_all_names())
    assert {
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "ignored_auth",
    } <= names
    assert len(ALL_CHECKS) == len(names)


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=timedelta(seconds=10),
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_check_passes(case: Any, api: ApiServer, keys: Keys, role: str) -> None:
    response = case.call_and_validate(
        base_url=api.url, headers=bearer(getattr(keys, role)), checks=ALL_CHECKS, timeout=30
    )
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and {"code", "message", "details"} == set(body["error"]), (
            f"{case.method} {case.formatted_path}: not the error shape: {response.text[:500]}"
        )
