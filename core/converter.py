"""How every payload crosses the Temporal boundary: pydantic models as JSON,
for clients, workers and the Replayer alike (sdk-python's
`temporalio.contrib.pydantic`), encrypted by `core.encryption` when a key is
configured, and stored by reference (`core.payload_refs`) when too large for
history.

`data_converter(settings)` is the one converter every client and the
Replayer use (`core.temporal.connect`, `worker.plugin.chorus_replayer`). It
always carries the codec chain, keys and store or not: a process without
keys writes plain payloads, reads plain ones, and refuses an encrypted one
with `PayloadKeyUnavailable` naming the key id and the setting, instead of
the payload converter's "unknown encoding"; likewise a reference whose blob
is gone fails with `PayloadBlobMissing` naming its digest.

The chain encodes with encryption first, then offloading, so a stored blob
is ciphertext when encryption is on and the reference in history is the
only thing in clear (a digest, a size, a store name); it decodes in the
reverse order.

`DATA_CONVERTER` is the same converter without the codec: for turning values
into payloads outside Temporal's own path (sizing a run's input).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from core.encryption import EncryptionCodec, Keyring
from core.payload_refs import PayloadRefCodec, payload_ref_codec

if TYPE_CHECKING:
    from core.settings import Settings

DATA_CONVERTER = pydantic_data_converter


class ChorusCodec(PayloadCodec):
    """Encryption, then large payloads by reference; decoded in reverse."""

    def __init__(self, encryption: EncryptionCodec, refs: PayloadRefCodec) -> None:
        super().__init__()
        self.encryption = encryption
        self.refs = refs

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self.refs.encode(await self.encryption.encode(payloads))

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self.encryption.decode(await self.refs.decode(payloads))


def converter_for(keyring: Keyring, refs: PayloadRefCodec | None = None) -> DataConverter:
    """The pydantic data converter with the encryption codec over `keyring`
    and the reference codec `refs` (default: no store, so nothing is
    offloaded and a reference is refused by name)."""
    codec = ChorusCodec(EncryptionCodec(keyring), refs or PayloadRefCodec())
    return dataclasses.replace(DATA_CONVERTER, payload_codec=codec)


def data_converter(settings: Settings) -> DataConverter:
    """The data converter of a process configured by `settings`."""
    return converter_for(settings.encryption_keyring(), payload_ref_codec(settings))
