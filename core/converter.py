"""How every payload crosses the Temporal boundary: pydantic models as JSON,
for clients, workers and the Replayer alike (sdk-python's
`temporalio.contrib.pydantic`), encrypted by `core.encryption` when a key is
configured.

`data_converter(settings)` is the one converter every client and the
Replayer use (`core.temporal.connect`, `worker.plugin.chorus_replayer`). It
always carries the encryption codec, keys or not: a process without keys
writes plain payloads, reads plain ones, and refuses an encrypted one with
`PayloadKeyUnavailable` naming the key id and the setting, instead of the
payload converter's "unknown encoding".

`DATA_CONVERTER` is the same converter without the codec: for turning values
into payloads outside Temporal's own path (sizing a run's input).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from core.encryption import EncryptionCodec, Keyring

if TYPE_CHECKING:
    from core.settings import Settings

DATA_CONVERTER = pydantic_data_converter


def converter_for(keyring: Keyring) -> DataConverter:
    """The pydantic data converter with the encryption codec over `keyring`."""
    return dataclasses.replace(DATA_CONVERTER, payload_codec=EncryptionCodec(keyring))


def data_converter(settings: Settings) -> DataConverter:
    """The data converter of a process configured by `settings`."""
    return converter_for(settings.encryption_keyring())
