"""No secret leaves in a log line, in either format, and no field is huge."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.encryption import new_key
from core.logging import configure_logging, get_logger, register_settings_secrets
from core.redaction import MASK, mask_known_secrets, redact_text, register_secret
from core.settings import Settings

PROVIDER_KEY = "canary-provider-key-7f3a9c"
ADMIN_KEY = "canary-admin-key-0123456789abcdef"
DB_PASSWORD = "canary-db-password-55aa"


@pytest.fixture(params=["json", "console"])
def log_format(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param
    logging.getLogger().handlers.clear()


def configure(log_format: str) -> None:
    configure_logging(
        Settings(
            log_format=log_format,
            admin_key=ADMIN_KEY,
            database_url=f"postgresql://chorus:{DB_PASSWORD}@db/chorus",
        ),
        force=True,
    )


def failing_call(api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}", "x-api-key": api_key}
    raise ConnectionError(f"provider refused the call (headers: {len(headers)})")


def test_tracebacks_carry_no_locals_and_known_secrets_are_masked(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(log_format)
    register_secret(PROVIDER_KEY)
    log = get_logger("test")
    try:
        failing_call(PROVIDER_KEY)
    except ConnectionError:
        log.exception("call failed", key=PROVIDER_KEY, url=f"postgresql://u:{DB_PASSWORD}@h/d")
    log.error("admin", headers={"Authorization": "Bearer anything-at-all-123", "X-Trace": "ok"})
    logging.getLogger("uvicorn.error").error("foreign record with %s", ADMIN_KEY)

    err = capsys.readouterr().err
    assert "call failed" in err and "ConnectionError" in err and "failing_call" in err
    for secret in (PROVIDER_KEY, ADMIN_KEY, DB_PASSWORD, "anything-at-all-123"):
        assert secret not in err, (secret, err)
    assert MASK in err and "X-Trace" in err


def test_a_huge_field_is_cut_and_says_its_length(capsys: pytest.CaptureFixture[str]) -> None:
    configure("json")
    get_logger("test").info("big", payload="x" * 3_000_000)
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"big"' in x]
    assert len(line["payload"]) < 5_000 and "truncated: 3000000 chars" in line["payload"]
    logging.getLogger().handlers.clear()


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abcdefghijklmnop",
        "key chorus_AbCdEfGhIjKlMnOpQrStUv was refused",
        "sk-ant-abcdefghijklmnopqrstuvwx",
        "postgresql://user:s3cr3t-pass@host:5432/db",
    ],
)
def test_secret_shapes_are_masked_even_unregistered(text: str) -> None:
    masked = redact_text(text)
    assert MASK in masked
    assert not any(
        part in masked
        for part in ("abcdefghijklmnop", "AbCdEfGhIjKl", "abcdefghijklmnopqrstuvwx", "s3cr3t-pass")
    )


def test_settings_repr_shows_no_secret() -> None:
    settings = Settings(
        admin_key=ADMIN_KEY,
        temporal_api_key="canary-temporal-key-99",
        database_url=f"postgresql://chorus:{DB_PASSWORD}@db/chorus",
    )
    text = repr(settings) + str(settings)
    for secret in (ADMIN_KEY, DB_PASSWORD, "canary-temporal-key-99"):
        assert secret not in text
    assert "postgresql://chorus:***@db/chorus" in text


def test_known_secrets_are_masked_outside_logs_too() -> None:
    # An error message bound for workflow history goes through this.
    register_secret(PROVIDER_KEY)
    echoed = f"Incorrect API key provided: {PROVIDER_KEY}; key {PROVIDER_KEY}"
    assert mask_known_secrets(echoed) == f"Incorrect API key provided: {MASK}; key {MASK}"
    assert mask_known_secrets(echoed, "[redacted]").count("[redacted]") == 2
    assert mask_known_secrets("nothing secret here") == "nothing secret here"


def test_codec_token_and_payload_keys_from_variable_and_file_are_masked(tmp_path: Path) -> None:
    from_variable, from_file = new_key(), new_key()
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# rotated 2026-11\nold:{from_file}\n")
    register_settings_secrets(
        Settings(
            encryption_keys=SecretStr(f"new:{from_variable}"),
            encryption_keys_file=keys_file,
            codec_auth_token=SecretStr("canary-codec-token-9d1e77"),
        )
    )
    line = f"decode failed: new:{from_variable} old:{from_file} token canary-codec-token-9d1e77"
    masked = mask_known_secrets(line)
    assert from_variable not in masked and from_file not in masked
    assert "canary-codec-token-9d1e77" not in masked and masked.startswith("decode failed")
