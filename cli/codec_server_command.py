"""`chorus codec-server`: Temporal's remote codec endpoints (`/encode`,
`/decode`) over this deployment's payload keys, for the Temporal UI and CLI
(api/codec_server.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.console import configure_logging, fail, load_settings


def codec_server(
    host: Annotated[str | None, typer.Option(help="default: CHORUS_CODEC_SERVER_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: CHORUS_CODEC_SERVER_PORT")] = None,
) -> None:
    """Serve the codec server for the Temporal UI and CLI until SIGINT/SIGTERM.

    Decodes with every key of CHORUS_ENCRYPTION_KEYS / CHORUS_ENCRYPTION_KEYS_FILE
    and requires CHORUS_CODEC_AUTH_TOKEN (`Authorization: Bearer <token>`; the
    Temporal CLI: `--codec-endpoint URL --codec-auth "Bearer <token>"`).
    CORS: CHORUS_CODEC_CORS_ORIGINS (default: the dev Temporal UI).
    """
    settings = load_settings()
    configure_logging(settings)
    from api.codec_server import CodecServerConfigError, serve

    if not settings.encryption_enabled:
        fail(
            "no payload key is configured: set CHORUS_ENCRYPTION_KEYS (id:base64key, "
            "e.g. from `openssl rand -base64 32`) or CHORUS_ENCRYPTION_KEYS_FILE"
        )
    try:
        serve(settings, host=host, port=port)
    except CodecServerConfigError as exc:
        fail(str(exc))
