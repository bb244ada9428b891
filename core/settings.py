"""Process settings: one `Settings` read once per process from the environment.

Every value can be set with an environment variable named `CHORUS_<FIELD>`
(for example `CHORUS_TEMPORAL_ADDRESS`), or in a `.env` file in the working
directory; real environment variables win over the file. The same class
configures the CLI, the worker and the embedded dev stack, which hands its own
settings to the child processes it starts through these variables.

The file defaults (chains directory, model registry, tools file, state
directory) belong to the project, not to the working directory: in a source
checkout they are absolute paths inside the repository, so `chorus run` works
from any folder. An installed package has no repository; there they stay
relative to the working directory (the image runs in /app, beside chains/).
A relative path set by the user always means relative to the working
directory, like any path typed in a shell.

Configuration is checked when it is built, so a half-configured TLS setup
fails at start-up with a message naming the variable, not at the first run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.input_limits import InputLimits
from core.redaction import MASK, url_password

if TYPE_CHECKING:
    from core.encryption import Keyring

ENV_PREFIX = "CHORUS_"

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]

DEFAULT_DEV_DYNAMIC_CONFIG: dict[str, Any] = {"history.transferProcessorMaxPollRPS": 1000}
"""The stock dev server polls its transfer queue at 20/s, which makes every
sequential activity step take ~50 ms; at 1000/s a step takes ~20 ms."""


SOURCE_ROOT = Path(__file__).resolve().parents[1]
"""The repository root, if this module runs from a source checkout (or an
editable install); `project_root()` says whether it does."""


def project_root() -> Path | None:
    """The repository of a source checkout, which holds the shipped chains;
    None for an installed package (no pyproject.toml and chains/ beside it)."""
    if (SOURCE_ROOT / "pyproject.toml").is_file() and (SOURCE_ROOT / "chains").is_dir():
        return SOURCE_ROOT
    return None


def project_path(relative: str) -> Path:
    """A default path of the project: absolute in a source checkout, else
    relative to the working directory."""
    root = project_root()
    return root / relative if root is not None else Path(relative)


ADMIN_KEY_MIN_LENGTH = 16
_PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "changethis", "secret", "password", "admin", "example", "placeholder", "xxx"}
)


def admin_key_problem(key: str) -> str | None:
    """Why a bootstrap admin key is unfit outside development, or None."""
    normalized = "".join(ch for ch in key.lower() if ch.isalnum())
    if normalized in _PLACEHOLDER_SECRETS or normalized.startswith(("changeme", "changethis")):
        return "is a placeholder: set a random secret (e.g. `openssl rand -hex 32`)"
    if len(key) < ADMIN_KEY_MIN_LENGTH:
        return f"is shorter than {ADMIN_KEY_MIN_LENGTH} characters"
    return None


class Settings(BaseSettings):
    """Everything a Chorus process needs to find Temporal, the models and its files."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # Errors must never echo the input: it can hold the Temporal API key.
        hide_input_in_errors=True,
    )

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "chorus"
    temporal_tls: bool | None = None
    """None (default): TLS is on when an API key or a client certificate is set."""
    temporal_tls_cert_path: Path | None = None
    temporal_tls_key_path: Path | None = None
    temporal_tls_ca_path: Path | None = None
    temporal_tls_server_name: str | None = None
    """Override of the server name checked against the certificate (SNI)."""
    temporal_api_key: SecretStr | None = None
    """Temporal Cloud API key; implies TLS."""
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)

    # Simulator and API
    simulator_host: str = "127.0.0.1"
    simulator_port: int = Field(default=8400, ge=1, le=65535)
    simulator_config: Path | None = None
    """Optional simulator configuration file, passed as `--config` by the dev stack."""
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_host: str = "127.0.0.1"
    """Interface `chorus api` listens on (0.0.0.0 in a container)."""
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Request bodies over this size are refused with 413 before being read in full."""
    input_limits: InputLimits = Field(default_factory=InputLimits)
    """Depth, string, number and document limits of what requests carry
    (`core.input_limits`); env: a JSON object, e.g. `CHORUS_INPUT_LIMITS='{"max_depth": 32}'`."""
    admin_key: SecretStr | None = None
    """Bootstrap admin API key (CHORUS_ADMIN_KEY): an admin named `bootstrap-admin`
    that can create the real keys. Outside development it must not be a placeholder."""
    environment: Literal["development", "production"] = "development"
    """`production` refuses placeholder secrets (CHORUS_ENVIRONMENT)."""

    # API capacity: what one API process takes on at once (see api/load_shedding.py)
    api_max_in_flight: int = Field(default=64, ge=1)
    """Requests the API handles at once; more wait in a queue (health checks never do)."""
    api_max_queued: int = Field(default=256, ge=0)
    """Requests that may wait for a slot; beyond that a request gets 503 with
    `Retry-After` at once."""
    api_queue_timeout_s: float = Field(default=5.0, gt=0)
    """How long a queued request waits for a slot before it gets 503 with `Retry-After`."""
    api_threads: int = Field(default=40, ge=1)
    """Threads for blocking work (database calls, sync routes); the API's
    database pool is sized from this."""
    api_body_read_timeout_s: float = Field(default=30.0, gt=0)
    """A request body not received in full within this long gets 408 (a slow
    client cannot hold a connection and a slot forever)."""
    database_pool_size: int | None = Field(default=None, ge=1)
    """Connections the API keeps open (None: one per API thread, `api_threads`)."""
    database_max_overflow: int = Field(default=10, ge=0)
    """Connections the API may open beyond `database_pool_size` under load."""
    database_pool_timeout_s: float = Field(default=10.0, gt=0)
    """How long a request waits for a free database connection before a 503."""

    # Files (defaults: see the module docstring)
    state_dir: Path = Field(default_factory=lambda: project_path(".state"))
    """Project-local state: Temporal's SQLite file, child logs, pid files."""
    models_file: Path = Field(default_factory=lambda: project_path("chains/models.yaml"))
    tools_file: Path = Field(default_factory=lambda: project_path("chains/tools/http.yaml"))
    """Declarative HTTP tools (CHORUS_TOOLS_FILE), loaded beside the builtin tools.
    In a subfolder: every YAML file directly in `chains_dir` is read as a chain."""
    chains_dir: Path = Field(default_factory=lambda: project_path("chains"))

    # Application database
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CHORUS_DATABASE_URL", "DATABASE_URL")
    )
    """SQLAlchemy URL of the application database (`postgresql://user:pass@host/db`
    for PostgreSQL); read from CHORUS_DATABASE_URL or, failing that, the
    conventional DATABASE_URL. None: a SQLite file in `state_dir`."""

    # Worker tuning
    max_cached_workflows: int = Field(default=1000, ge=0)
    workflow_sandbox: bool = True
    """Run workflow code in Temporal's sandbox (CHORUS_WORKFLOW_SANDBOX). The
    sandbox re-imports each run's workflow module and checks, at run time,
    that workflow code calls nothing non-deterministic; it costs worker CPU
    on every run and activation (README, Benchmarks). Off, the same checks
    are the static ones every commit passes (workflows/ruff.toml, the
    import contracts) and the replay tests over recorded histories."""
    max_concurrent_activities: int = Field(default=200, ge=1)

    # Rate limits across workers (models.yaml `rpm`, `tpm`, `max_concurrent`)
    rate_limiter: Literal["database", "redis"] = "database"
    """Where the workers of a deployment keep their shared rate-limit state:
    the application database (default: one short transaction per limited
    call) or Redis (`redis_url`; for many workers)."""
    redis_url: str | None = None
    """`redis://[:password@]host:port/db` of the Redis the limiter uses."""
    redis_key_prefix: str = Field(default="chorus:rl", min_length=1, max_length=100)
    """Prefix of the limiter's Redis keys (deployments sharing one Redis differ here)."""

    # Metrics (core/metrics.py)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of this process's Prometheus endpoint (`/metrics`): a worker's
    serves the Temporal SDK's metrics and Chorus' own, the API's its request
    metrics. None (default): no endpoint."""
    metrics_host: str = "127.0.0.1"
    """Interface the metrics endpoint listens on (0.0.0.0 in a container)."""

    # Traces (core/tracing.py); the exporter itself reads the standard OTEL_* variables
    tracing: Literal["auto", "otlp", "off"] = "auto"
    """`auto` (default): traces go out when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    `..._TRACES_ENDPOINT`, or `OTEL_TRACES_EXPORTER`) is set, else off; `otlp`:
    always (default endpoint http://localhost:4318); `off`: never."""
    trace_content: bool = False
    """Put prompt and reply text in the model-call spans (CHORUS_TRACE_CONTENT);
    off by default: spans carry aliases, tokens and cost, never what was said."""

    # Logging
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"

    # Payload encryption (core/encryption.py) and the codec server
    encryption_keys: SecretStr | None = None
    """`id:base64key,id2:base64key` (CHORUS_ENCRYPTION_KEYS): AES-256 keys that
    decrypt payloads; setting any key turns encryption on."""
    encryption_keys_file: Path | None = None
    """A file of `id:base64key` lines (`#` comments), read with `encryption_keys`."""
    encryption_active_key: str | None = None
    """The key id new payloads are encrypted with (default: the first key listed)."""
    codec_auth_token: SecretStr | None = None
    """Bearer token `chorus codec-server` requires (CHORUS_CODEC_AUTH_TOKEN)."""
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = Field(default=8081, ge=1, le=65535)
    codec_cors_origins: str | None = None
    """Comma-separated origins allowed to call the codec server (the Temporal
    UI's); default: the dev UI at 127.0.0.1 and localhost on `temporal_ui_port`."""

    # Large payloads by reference (core/payload_refs.py)
    payload_offload_bytes: int = Field(default=256 * 1024, ge=0, le=2 * 1024 * 1024)
    """A payload larger than this (bytes, as Temporal would carry it) is
    stored in the payload store and history holds a reference; 0: never
    (references are still read)."""
    payload_store: Literal["database", "filesystem"] = "database"
    """Where offloaded payloads live: the application database (table
    `payload_blobs`) or a directory (`payload_store_dir`)."""
    payload_store_dir: Path | None = None
    """The filesystem store's directory (default `state_dir/payloads`);
    shared by every process of a deployment."""
    payload_retention_days: float = Field(default=30.0, gt=0)
    """`chorus payloads sweep` removes blobs unused for this many days."""

    # Embedded dev server
    dev_dynamic_config: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_DEV_DYNAMIC_CONFIG)
    )
    """Dynamic config values handed to `temporal server start-dev`
    (env: a JSON object, e.g. `CHORUS_DEV_DYNAMIC_CONFIG='{"limit.x": 5}'`)."""

    @field_validator("log_format", "log_level", "tracing", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("temporal_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"CHORUS_TEMPORAL_ADDRESS must be HOST:PORT (e.g. 127.0.0.1:7233), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        cert, key = self.temporal_tls_cert_path, self.temporal_tls_key_path
        if key is not None and cert is None:
            raise ValueError(
                "CHORUS_TEMPORAL_TLS_KEY_PATH is set but CHORUS_TEMPORAL_TLS_CERT_PATH is not: "
                "mutual TLS needs both the client certificate and its private key"
            )
        if cert is not None and key is None:
            raise ValueError(
                "CHORUS_TEMPORAL_TLS_CERT_PATH is set but CHORUS_TEMPORAL_TLS_KEY_PATH is not: "
                "mutual TLS needs both the client certificate and its private key"
            )
        for env_name, path in (
            ("CHORUS_TEMPORAL_TLS_CERT_PATH", cert),
            ("CHORUS_TEMPORAL_TLS_KEY_PATH", key),
            ("CHORUS_TEMPORAL_TLS_CA_PATH", self.temporal_tls_ca_path),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{env_name} points at {str(path)!r}, which is not a file")
        if self.temporal_tls is False and (
            cert is not None or self.temporal_tls_ca_path is not None
        ):
            raise ValueError(
                "CHORUS_TEMPORAL_TLS is false but TLS certificate paths are set: "
                "remove the paths or enable TLS"
            )
        if self.temporal_tls is False and self.temporal_api_key is not None:
            raise ValueError(
                "CHORUS_TEMPORAL_API_KEY is set but CHORUS_TEMPORAL_TLS is false: "
                "Temporal Cloud API keys are only sent over TLS"
            )
        return self

    @model_validator(mode="after")
    def _check_rate_limiter(self) -> Self:
        if self.rate_limiter == "redis" and not self.redis_url:
            raise ValueError(
                "CHORUS_RATE_LIMITER is redis but CHORUS_REDIS_URL is not set "
                "(e.g. redis://127.0.0.1:6379/0)"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("CHORUS_REDIS_URL must start with redis://, rediss:// or unix://")
        return self

    @model_validator(mode="after")
    def _check_admin_key(self) -> Self:
        if self.admin_key is None or self.environment == "development":
            return self
        problem = admin_key_problem(self.admin_key.get_secret_value())
        if problem is not None:
            raise ValueError(f"CHORUS_ADMIN_KEY {problem} (CHORUS_ENVIRONMENT={self.environment})")
        return self

    @model_validator(mode="after")
    def _check_encryption(self) -> Self:
        self.encryption_keyring()
        token = self.codec_auth_token
        if token is not None and self.environment != "development":
            problem = admin_key_problem(token.get_secret_value())
            if problem is not None:
                raise ValueError(
                    f"CHORUS_CODEC_AUTH_TOKEN {problem} (CHORUS_ENVIRONMENT={self.environment})"
                )
        return self

    def encryption_keyring(self) -> Keyring:
        """The payload keys (read from `encryption_keys_file` on each call)."""
        from core.encryption import load_keyring

        return load_keyring(
            self.encryption_keys.get_secret_value() if self.encryption_keys else None,
            self.encryption_keys_file,
            self.encryption_active_key,
        )

    @property
    def encryption_enabled(self) -> bool:
        """Whether new payloads are encrypted (a key is configured)."""
        return self.encryption_keyring().active is not None

    @property
    def codec_server_url(self) -> str:
        return f"http://{self.codec_server_host}:{self.codec_server_port}"

    @property
    def codec_cors_origin_list(self) -> list[str]:
        if self.codec_cors_origins is not None:
            return [o.strip().rstrip("/") for o in self.codec_cors_origins.split(",") if o.strip()]
        port = self.temporal_ui_port
        return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]

    @property
    def tls_enabled(self) -> bool:
        """Whether the Temporal connection uses TLS (explicit, or implied by
        an API key or any certificate path)."""
        if self.temporal_tls is not None:
            return self.temporal_tls
        return (
            self.temporal_api_key is not None
            or self.temporal_tls_cert_path is not None
            or self.temporal_tls_ca_path is not None
        )

    @property
    def temporal_host(self) -> str:
        return self.temporal_address.rpartition(":")[0]

    @property
    def temporal_port(self) -> int:
        return int(self.temporal_address.rpartition(":")[2])

    @property
    def simulator_base_url(self) -> str:
        """OpenAI-compatible base URL of the simulator (what a registry entry's
        `base_url` would be for a real provider)."""
        return f"http://{self.simulator_host}:{self.simulator_port}/v1"

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # `repr(settings)` (a traceback, a debugger, a log line) shows no
        # database password; SecretStr fields mask themselves.
        for name, value in super().__repr_args__():
            if name in ("database_url", "redis_url") and isinstance(value, str):
                password = url_password(value)
                value = value.replace(f":{password}@", f":{MASK}@") if password else value
            yield name, value

    @property
    def temporal_ui_url(self) -> str:
        return f"http://{self.temporal_host}:{self.temporal_ui_port}"

    @property
    def effective_payload_store_dir(self) -> Path:
        return self.payload_store_dir or self.state_dir / "payloads"

    @property
    def effective_database_url(self) -> str:
        """The database URL to use: the configured one, or the SQLite file
        `state_dir/chorus.db` (one machine, no server to run)."""
        return self.database_url or f"sqlite:///{self.state_dir}/chorus.db"

    def to_env(self) -> dict[str, str]:
        """These settings as `CHORUS_*` variables, so a child process started
        with them reads exactly the same configuration."""
        env: dict[str, str] = {}
        for name, value in self:
            if value is None:
                continue
            key = f"{ENV_PREFIX}{name.upper()}"
            if isinstance(value, SecretStr):
                env[key] = value.get_secret_value()
            elif isinstance(value, bool):
                env[key] = "true" if value else "false"
            elif isinstance(value, dict):
                env[key] = json.dumps(value)
            elif isinstance(value, InputLimits):
                env[key] = value.model_dump_json()
            else:
                env[key] = str(value)
        return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (tests build `Settings(...)` directly)."""
    return Settings()
