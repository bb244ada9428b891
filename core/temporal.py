"""One way to connect to Temporal, shared by the CLI, the worker and the API.

Every client uses the one data converter (`core.converter.data_converter`:
pydantic, encrypted when a key is configured), so typed inputs and results
round-trip the same way everywhere. The same settings reach a local dev
server, a self-hosted cluster with mutual TLS, or Temporal Cloud with an API
key: only environment variables change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from core.converter import data_converter
from core.search_attributes import CHAIN_KEY, COST_KEY, STATUS_KEY
from core.settings import Settings
from core.tracing import temporal_interceptors

__all__ = ["CHAIN_KEY", "COST_KEY", "STATUS_KEY", "TemporalConnectError", "connect", "tls_config"]


class TemporalConnectError(RuntimeError):
    """Temporal could not be reached with the configured address and credentials."""


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def tls_config(settings: Settings) -> TLSConfig | bool:
    """The `tls=` argument for `Client.connect`: False, True (system roots,
    e.g. Temporal Cloud with an API key), or a TLSConfig with a client
    certificate and/or a private CA."""
    if not settings.tls_enabled:
        return False
    cert, key, ca = (
        settings.temporal_tls_cert_path,
        settings.temporal_tls_key_path,
        settings.temporal_tls_ca_path,
    )
    if cert is None and ca is None and settings.temporal_tls_server_name is None:
        return True
    return TLSConfig(
        server_root_ca_cert=_read(ca),
        client_cert=_read(cert),
        client_private_key=_read(key),
        domain=settings.temporal_tls_server_name,
    )


async def connect(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] | None = None,
) -> Client:
    """Connect to the configured Temporal namespace (on `runtime`, e.g. one
    exporting metrics, `core.metrics.sdk_metrics_runtime`; else the default).
    `interceptors` default to the tracing ones (`core.tracing`: none when
    tracing is off); a worker built on this client applies them too.

    Raises TemporalConnectError naming the address when the server does not
    answer, instead of the SDK's bare transport error.
    """
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            api_key=api_key,
            tls=tls_config(settings),
            data_converter=data_converter(settings),
            runtime=runtime,
            interceptors=temporal_interceptors(settings) if interceptors is None else interceptors,
        )
    except RuntimeError as exc:
        hint = (
            " (start a local one with `chorus dev`)"
            if settings.temporal_host in ("127.0.0.1", "localhost")
            else ""
        )
        raise TemporalConnectError(
            f"cannot connect to Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace!r}){hint}: {exc}"
        ) from exc


async def register_search_attributes(client: Client, namespace: str = "default") -> None:
    """Register Chorus's search attributes on a server that lacks them (the
    time-skipping test server, a fresh self-hosted namespace). Idempotent: a
    server that already has them answers AlreadyExists, which is fine."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    from core.search_attributes import ALL_KEYS

    for key in ALL_KEYS:
        # The SDK's SearchAttributeIndexedValueType mirrors the proto enum's values.
        kind = IndexedValueType.ValueType(int(key.indexed_value_type))
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes={key.name: kind})
            )
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
