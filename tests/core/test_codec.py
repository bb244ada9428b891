"""The payload codec (core/encryption.py) and its settings: AES-256-GCM with
the key id in the metadata, rotation, pass-through of plain payloads, and
errors that name the key id and the setting, never key material."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from core.converter import converter_for, data_converter
from core.encryption import (
    ENCRYPTED_ENCODING,
    KEY_ID_KEY,
    EncryptionCodec,
    EncryptionConfigError,
    Keyring,
    PayloadDecryptionFailed,
    PayloadKeyUnavailable,
    load_keyring,
    new_key,
    parse_keys,
)
from core.settings import Settings

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(32, 64))).decode()
"""Fixed test keys: they appear in parametrized test ids, which pytest-xdist's
workers must collect identically."""
CANARY = "canary-ticket-7f3a: my parcel never arrived"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("CHORUS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def keyring(spec: str, active: str | None = None) -> Keyring:
    return load_keyring(spec, None, active)


async def test_round_trip_hides_the_text_and_names_the_key() -> None:
    converter = converter_for(keyring(f"a:{KEY_A}"))

    [payload] = await converter.encode([{"ticket": CANARY}])

    assert payload.metadata["encoding"] == ENCRYPTED_ENCODING
    assert payload.metadata[KEY_ID_KEY] == b"a"
    assert set(payload.metadata) == {"encoding", KEY_ID_KEY}  # json/plain is inside
    assert CANARY.encode() not in payload.SerializeToString()
    assert await converter.decode([payload], [dict]) == [{"ticket": CANARY}]


async def test_every_payload_gets_its_own_nonce() -> None:
    codec = EncryptionCodec(keyring(f"a:{KEY_A}"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')

    first, second = await codec.encode([plain, plain])

    assert first.data[:12] != second.data[:12]
    assert first.data != second.data


async def test_rotation_encrypts_with_the_active_key_and_reads_the_old_one() -> None:
    old = EncryptionCodec(keyring(f"a:{KEY_A}"))
    [under_a] = await old.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    rotated = EncryptionCodec(keyring(f"b:{KEY_B},a:{KEY_A}"))

    [under_b] = await rotated.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"2")])

    assert under_b.metadata[KEY_ID_KEY] == b"b"
    assert [p.data for p in await rotated.decode([under_a, under_b])] == [b"1", b"2"]
    with pytest.raises(PayloadKeyUnavailable) as caught:
        await old.decode([under_b])
    assert caught.value.key_id == "b"


async def test_an_explicit_active_key_wins_over_the_order() -> None:
    codec = EncryptionCodec(keyring(f"b:{KEY_B},a:{KEY_A}", active="a"))
    [payload] = await codec.encode([Payload(data=b"x")])
    assert payload.metadata[KEY_ID_KEY] == b"a"


async def test_plain_payloads_pass_through_both_ways_without_keys() -> None:
    codec = EncryptionCodec(Keyring())
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"hi"')

    assert not codec.enabled
    assert await codec.encode([plain]) == [plain]
    assert await codec.decode([plain]) == [plain]
    # and with keys, a payload recorded before encryption still reads
    assert await EncryptionCodec(keyring(f"a:{KEY_A}")).decode([plain]) == [plain]


async def test_a_process_without_the_key_names_the_key_and_the_setting() -> None:
    [payload] = await converter_for(keyring(f"prod-2025:{KEY_A}")).encode(["x"])

    with pytest.raises(PayloadKeyUnavailable) as keyless:
        await converter_for(Keyring()).decode([payload], [str])
    message = str(keyless.value)
    assert "'prod-2025'" in message and "CHORUS_ENCRYPTION_KEYS" in message
    assert "no encryption keys" in message

    with pytest.raises(PayloadKeyUnavailable) as other:
        await converter_for(keyring(f"b:{KEY_B}")).decode([payload], [str])
    assert "'prod-2025'" in str(other.value) and "'b'" in str(other.value)
    assert KEY_A not in str(other.value) and KEY_B not in str(other.value)


async def test_a_wrong_key_under_the_same_id_or_a_tampered_payload_fails_authentication() -> None:
    [payload] = await EncryptionCodec(keyring(f"a:{KEY_A}")).encode([Payload(data=b"x")])
    wrong = EncryptionCodec(keyring(f"a:{KEY_B}"))
    with pytest.raises(PayloadDecryptionFailed, match=r"'a'.*authentication failed"):
        await wrong.decode([payload])

    tampered = Payload()
    tampered.CopyFrom(payload)
    tampered.data = payload.data[:-1] + bytes([payload.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptionFailed):
        await EncryptionCodec(keyring(f"a:{KEY_A}")).decode([tampered])


def test_parse_keys_reads_commas_lines_and_comments() -> None:
    text = f"# rotated 2025-06\nb:{KEY_B}\n\na:{KEY_A}, c:{new_key()}\n"
    assert list(parse_keys(text, source="file")) == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("a", "not `id:base64key`"),
        (f"bad id:{KEY_A}", "not `id:base64key`"),
        ("a:not-base64!", "not valid base64"),
        (f"a:{base64.b64encode(b'short').decode()}", "is 5 bytes, AES-256 needs 32"),
        (f"a:{KEY_A},a:{KEY_B}", "appears twice"),
    ],
)
def test_bad_keys_are_refused_without_echoing_them(spec: str, problem: str) -> None:
    with pytest.raises(EncryptionConfigError, match=problem) as caught:
        parse_keys(spec, source="CHORUS_ENCRYPTION_KEYS")
    assert KEY_A not in str(caught.value) and KEY_B not in str(caught.value)
    assert "not-base64" not in str(caught.value)


def test_settings_read_keys_from_env_and_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"a:{KEY_A}\n")
    monkeypatch.setenv("CHORUS_ENCRYPTION_KEYS", f"b:{KEY_B}")
    monkeypatch.setenv("CHORUS_ENCRYPTION_KEYS_FILE", str(keys_file))

    settings = Settings()

    ring = settings.encryption_keyring()
    assert (ring.key_ids, ring.active) == (["b", "a"], "b")
    assert settings.encryption_enabled
    assert KEY_A not in repr(settings) and KEY_B not in repr(settings)
    assert KEY_A not in repr(ring) and KEY_B not in repr(ring)
    # the dev stack hands its settings to its children through the environment
    monkeypatch.delenv("CHORUS_ENCRYPTION_KEYS")
    monkeypatch.delenv("CHORUS_ENCRYPTION_KEYS_FILE")
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    assert Settings().encryption_keyring() == ring


def test_encryption_is_off_without_a_key() -> None:
    settings = Settings()
    assert not settings.encryption_enabled
    assert not data_converter(settings).payload_codec.encryption.enabled  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"CHORUS_ENCRYPTION_KEYS": f"a:{KEY_A}", "CHORUS_ENCRYPTION_ACTIVE_KEY": "z"},
         "CHORUS_ENCRYPTION_ACTIVE_KEY is 'z', which is not among the keys ('a')"),
        ({"CHORUS_ENCRYPTION_KEYS_FILE": "/nonexistent/keys"},
         "CHORUS_ENCRYPTION_KEYS_FILE points at '/nonexistent/keys', which cannot be read"),
        ({"CHORUS_ENCRYPTION_KEYS": "a:abc"}, "CHORUS_ENCRYPTION_KEYS: key 'a' is not valid"),
        ({"CHORUS_CODEC_AUTH_TOKEN": "changeme", "CHORUS_ENVIRONMENT": "production"},
         "CHORUS_CODEC_AUTH_TOKEN is a placeholder"),
    ],
)  # fmt: skip
def test_bad_encryption_settings_fail_when_built(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert problem in str(caught.value)
    assert KEY_A not in str(caught.value)


def test_codec_cors_origins_default_to_the_ui_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_TEMPORAL_UI_PORT", "9233")
    assert Settings().codec_cors_origin_list == ["http://127.0.0.1:9233", "http://localhost:9233"]
    monkeypatch.setenv("CHORUS_CODEC_CORS_ORIGINS", "https://temporal.example.com/, http://x:1")
    assert Settings().codec_cors_origin_list == ["https://temporal.example.com", "http://x:1"]
