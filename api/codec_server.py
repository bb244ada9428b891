"""`chorus codec-server`: Temporal's remote codec protocol over Chorus's keys,
so the Temporal UI and CLI show encrypted payloads in clear to people allowed
to see them.

The protocol (Temporal's "codec server", samples-python
`encryption/codec_server.py`): `POST /encode` and `POST /decode` take and
return `{"payloads": [...]}`, protobuf's JSON form of `Payloads` (metadata
values and data base64). The UI sends `Content-Type: application/json` and
`X-Namespace` (accepted; one deployment's keys serve every namespace) from
its own origin, so CORS allows the configured origins (the Temporal UI's).

Every request needs the token of `CHORUS_CODEC_AUTH_TOKEN`: as
`Authorization: Bearer <token>` (the Temporal CLI's `--codec-auth`, a UI that
passes an access token), or in the path, `/t/<token>/decode`, for a UI that
sends no header of its own (the dev server's embedded UI, which `chorus dev`
points at such a URL). Without it: 401; with another token: 403. The access
log is off so the path form never reaches a log.

A payload under a key this process lacks is refused with 422 naming the key
id, not passed back as if decoded. A large payload stored by reference
(`core.payload_refs`) decodes to the real payload, read from the
deployment's payload store; a reference whose blob is gone is refused with
422 naming its digest.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

import store.payload_blobs  # noqa: F401  (registers the database payload store)
from core.converter import ChorusCodec
from core.encryption import EncryptionCodec, Keyring, PayloadDecryptionFailed, PayloadKeyUnavailable
from core.logging import get_logger
from core.payload_refs import PayloadRefCodec, PayloadStoreError, payload_ref_codec
from core.redaction import register_secret
from core.settings import Settings
from core.uvicorn_thread import BackgroundServer, bind_socket, run_until_stopped

log = get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
"""A history page of payloads at Temporal's 2 MB limit each fits several times."""

TOKEN_ENV = "CHORUS_CODEC_AUTH_TOKEN"


class CodecServerConfigError(RuntimeError):
    """The codec server cannot start with these settings."""


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def create_codec_app(
    keyring: Keyring,
    *,
    auth_token: str,
    cors_origins: Sequence[str] = (),
    refs: PayloadRefCodec | None = None,
) -> FastAPI:
    """The codec server's ASGI app over `keyring` and the payload store of
    `refs` (none: references are refused), requiring `auth_token`."""
    if not auth_token:
        raise CodecServerConfigError(f"the codec server needs a token: set {TOKEN_ENV}")
    codec = ChorusCodec(EncryptionCodec(keyring), refs or PayloadRefCodec())
    expected = auth_token.encode()
    app = FastAPI(title="Chorus codec server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cors_origins),
        allow_methods=["POST"],
        allow_headers=["content-type", "x-namespace", "authorization"],
        allow_credentials=True,
        max_age=600,
    )

    def refusal(request: Request, path_token: str | None) -> JSONResponse | None:
        if path_token is not None:
            given: str | None = path_token
        else:
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            given = credentials.strip() if scheme.lower() == "bearer" else None
        if not given:
            return _problem(
                401,
                "missing codec server token: send `Authorization: Bearer <token>`",
                {"WWW-Authenticate": 'Bearer realm="chorus-codec"'},
            )
        if not hmac.compare_digest(given.encode(), expected):
            return _problem(403, "wrong codec server token")
        return None

    async def apply(
        request: Request,
        operation: str,
        transform: Callable[[Sequence[Payload]], Awaitable[list[Payload]]],
        path_token: str | None = None,
    ) -> Response:
        refused = refusal(request, path_token)
        if refused is not None:
            return refused
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            payloads = json_format.Parse(body or b"{}", Payloads())
        except json_format.ParseError as exc:
            return _problem(400, f'body is not {{"payloads": [...]}} in Temporal\'s JSON: {exc}')
        try:
            result = await transform(payloads.payloads)
        except (PayloadKeyUnavailable, PayloadDecryptionFailed) as exc:
            log.warning("codec request refused", operation=operation, key_id=exc.key_id)
            return _problem(422, str(exc))
        except PayloadStoreError as exc:
            log.warning(
                "codec request refused", operation=operation, digest=getattr(exc, "digest", None)
            )
            return _problem(422, str(exc))
        log.debug(
            "codec request",
            operation=operation,
            payloads=len(result),
            namespace=request.headers.get("x-namespace"),
        )
        return Response(
            json_format.MessageToJson(Payloads(payloads=result)), media_type="application/json"
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/encode", include_in_schema=False)
    async def encode(request: Request) -> Response:
        return await apply(request, "encode", codec.encode)

    @app.post("/decode", include_in_schema=False)
    async def decode(request: Request) -> Response:
        return await apply(request, "decode", codec.decode)

    @app.post("/t/{token}/encode", include_in_schema=False)
    async def encode_with_path_token(request: Request, token: str) -> Response:
        return await apply(request, "encode", codec.encode, token)

    @app.post("/t/{token}/decode", include_in_schema=False)
    async def decode_with_path_token(request: Request, token: str) -> Response:
        return await apply(request, "decode", codec.decode, token)

    return app


def codec_app_from_settings(settings: Settings) -> FastAPI:
    """The codec server configured by `settings` (keys, token, UI origins)."""
    token = settings.codec_auth_token.get_secret_value() if settings.codec_auth_token else ""
    return create_codec_app(
        settings.encryption_keyring(),
        auth_token=token,
        cors_origins=settings.codec_cors_origin_list,
        refs=payload_ref_codec(settings),
    )


def ui_endpoint(settings: Settings) -> str:
    """The codec endpoint for a Temporal UI that sends no token of its own
    (the dev server's): the token travels in the path."""
    token = settings.codec_auth_token.get_secret_value() if settings.codec_auth_token else ""
    return f"{settings.codec_server_url}/t/{token}"


def _config(settings: Settings) -> uvicorn.Config:
    app = codec_app_from_settings(settings)
    register_secret(settings.codec_auth_token.get_secret_value())  # type: ignore[union-attr]
    return uvicorn.Config(
        app,
        log_level=settings.log_level,
        log_config=None,
        # The path form carries the token: no access log.
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM. Raises CodecServerConfigError without a
    token, or when the port is taken."""
    config = _config(settings)
    host = host or settings.codec_server_host
    sock = bind_socket(
        host,
        settings.codec_server_port if port is None else port,
        what="the codec server",
        error=CodecServerConfigError,
        hint=" (set CHORUS_CODEC_SERVER_PORT to a free port)",
    )
    ring = settings.encryption_keyring()
    log.info(
        "Chorus codec server listening",
        url=f"http://{host}:{sock.getsockname()[1]}",
        key_ids=ring.key_ids,
        active_key=ring.active,
        cors_origins=settings.codec_cors_origin_list,
    )
    if not run_until_stopped(config, sock):
        raise CodecServerConfigError(f"the codec server did not start on {host}")


class CodecServer(BackgroundServer):
    """The codec server on a background thread (tests); `port=0` picks a free port."""

    what = "the codec server"
    start_error = CodecServerConfigError
    thread_name = "chorus-codec"

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_config(settings), host=host, port=port)
