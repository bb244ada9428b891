"""Payload encryption: AES-256-GCM over every payload Temporal stores.

Run inputs, prompts, model replies and approvals are customer data (tickets,
drafted replies, retrieved documents); with a key configured, Temporal's
history holds them only as ciphertext. The codec sits in the one data
converter (`core.converter.data_converter`), so the worker, the API, the CLI
and the Replayer encrypt and decrypt the same way.

The format follows samples-python's `encryption/codec.py`, so its codec
server (and the TypeScript and Go samples') reads these payloads given the
key: the whole serialized payload (data and metadata) is encrypted with a
random 96-bit nonce, stored as `nonce || ciphertext+tag`, under the metadata
`encoding: binary/encrypted` and `encryption-key-id: <id>`.

Several keys: one active key encrypts, every configured key decrypts, so
payloads written before a rotation stay readable. Keys come from
`CHORUS_ENCRYPTION_KEYS` and/or `CHORUS_ENCRYPTION_KEYS_FILE` (see
`core.settings`), never from a workflow input; only key ids reach history.

Search attributes are not payloads: they stay readable for visibility queries.
Failure messages are not encrypted either (Temporal's default failure
converter keeps them in clear), which is what lets a worker without a key
say so in the task failure the UI shows.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING_KEY = "encoding"
ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_KEY = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32

KEYS_ENV = "CHORUS_ENCRYPTION_KEYS"
KEYS_FILE_ENV = "CHORUS_ENCRYPTION_KEYS_FILE"
ACTIVE_KEY_ENV = "CHORUS_ENCRYPTION_ACTIVE_KEY"

_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class EncryptionConfigError(ValueError):
    """The configured keys cannot be used. The message names variables and
    key ids, never key material."""


class PayloadKeyUnavailable(RuntimeError):
    """A payload is encrypted with a key this process does not have.

    Deliberately not a (non-retryable) ApplicationError: in a workflow task
    the SDK fails the task, which Temporal retries and the UI shows with this
    message, so the run resumes once a worker with the key picks it up
    instead of failing for good.
    """

    def __init__(self, key_id: str, known: Sequence[str]) -> None:
        self.key_id = key_id
        if known:
            have = f"this process has keys {', '.join(repr(k) for k in known)} only"
        else:
            have = "this process has no encryption keys"
        super().__init__(
            f"payload is encrypted with key {key_id!r}, which is not configured ({have}): "
            f"add {key_id!r} to {KEYS_ENV} or {KEYS_FILE_ENV}"
        )


class PayloadDecryptionFailed(RuntimeError):
    """A payload did not authenticate under the key its id names: the key
    with that id is not the one that encrypted it, or the payload was altered."""

    def __init__(self, key_id: str, reason: str) -> None:
        self.key_id = key_id
        super().__init__(f"payload encrypted with key {key_id!r} cannot be decrypted: {reason}")


@dataclass(frozen=True)
class Keyring:
    """The keys of a process: `active` encrypts (None: encryption off), all decrypt."""

    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    active: str | None = None

    def __post_init__(self) -> None:
        if self.active is not None and self.active not in self.keys:
            raise EncryptionConfigError(f"active key {self.active!r} is not among the keys")

    @property
    def key_ids(self) -> list[str]:
        return list(self.keys)

    def __repr__(self) -> str:  # ids only, never key material
        return f"Keyring(key_ids={self.key_ids!r}, active={self.active!r})"


def new_key() -> str:
    """A fresh random AES-256 key, base64 (what `id:KEY` takes)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def parse_keys(text: str, *, source: str) -> dict[str, bytes]:
    """`id:base64key` entries separated by commas or newlines (`#` starts a
    comment line), in order. Errors name `source` and the key id only."""
    keys: dict[str, bytes] = {}
    for number, raw in enumerate(re.split(r"[,\n]", text), start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not _KEY_ID.match(key_id):
            raise EncryptionConfigError(
                f"{source}: entry {number} is not `id:base64key` with an id of letters, "
                "digits, '.', '_' or '-' (at most 64)"
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionConfigError(f"{source}: key {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise EncryptionConfigError(
                f"{source}: key {key_id!r} is {len(key)} bytes, AES-256 needs {KEY_BYTES} "
                "(make one with `openssl rand -base64 32`)"
            )
        if key_id in keys:
            raise EncryptionConfigError(f"{source}: key id {key_id!r} appears twice")
        keys[key_id] = key
    return keys


def load_keyring(
    keys: str | None = None, keys_file: Path | None = None, active: str | None = None
) -> Keyring:
    """The keyring from the settings' values: the keys of `keys` then of
    `keys_file`; the active key is `active`, else the first key listed."""
    collected: dict[str, bytes] = {}
    if keys:
        collected.update(parse_keys(keys, source=KEYS_ENV))
    if keys_file is not None:
        try:
            text = keys_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise EncryptionConfigError(
                f"{KEYS_FILE_ENV} points at {str(keys_file)!r}, which cannot be read: "
                f"{exc.strerror or exc}"
            ) from None
        for key_id, key in parse_keys(text, source=f"{KEYS_FILE_ENV} ({keys_file})").items():
            if key_id in collected and collected[key_id] != key:
                raise EncryptionConfigError(
                    f"key id {key_id!r} has different keys in {KEYS_ENV} and {KEYS_FILE_ENV}"
                )
            collected[key_id] = key
    if active is not None:
        if active not in collected:
            where = ", ".join(repr(k) for k in collected) or "none configured"
            raise EncryptionConfigError(
                f"{ACTIVE_KEY_ENV} is {active!r}, which is not among the keys ({where})"
            )
    elif collected:
        active = next(iter(collected))
    return Keyring(keys=collected, active=active)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM with the keyring's active key; payloads without the
    encrypted encoding pass through both ways (histories recorded before
    encryption, and everything when no key is configured)."""

    def __init__(self, keyring: Keyring) -> None:
        super().__init__()
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    @property
    def enabled(self) -> bool:
        return self.keyring.active is not None

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.encode_sync(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.decode_sync(payloads)

    def encode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        active = self.keyring.active
        if active is None:
            return list(payloads)
        cipher = self._ciphers[active]
        encoded: list[Payload] = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), None)
            encoded.append(
                Payload(
                    metadata={ENCODING_KEY: ENCRYPTED_ENCODING, KEY_ID_KEY: active.encode()},
                    data=nonce + sealed,
                )
            )
        return encoded

    def decode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        decoded: list[Payload] = []
        for payload in payloads:
            if payload.metadata.get(ENCODING_KEY) != ENCRYPTED_ENCODING:
                decoded.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID_KEY, b"").decode("utf-8", "replace")
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise PayloadKeyUnavailable(key_id, self.keyring.key_ids)
            data = payload.data
            if len(data) < NONCE_BYTES + 16:
                raise PayloadDecryptionFailed(key_id, "it is too short to be AES-GCM output")
            try:
                plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
            except InvalidTag:
                raise PayloadDecryptionFailed(
                    key_id,
                    "authentication failed (the key configured under this id is not the one "
                    "that encrypted it, or the payload was altered)",
                ) from None
            decoded.append(Payload.FromString(plain))
        return decoded
