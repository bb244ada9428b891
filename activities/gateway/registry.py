"""The model registry: aliases → provider, model id, endpoint, key variable, prices.

Chains name models by alias only; this file is the one place that turns an
alias into something callable. It is validated completely when it is loaded
(every alias has a known provider, a usable endpoint and a price) so a bad
entry stops the worker at start-up instead of failing a run halfway.

Keys never appear here: an entry names the environment variable that holds
its key, and the activity reads it when it runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from activities.gateway.pricing import lookup
from activities.gateway.types import ModelInfo, ModelPrices
from core.settings import project_path

ProviderName = Literal["openai", "anthropic", "simulator", "local"]
"""`local`: an embedding model run in the worker process from an installed
package (activities/retrieval/local_embeddings.py); it has no URL, key or
price and answers no chat step."""
PriceSource = Literal["registry", "genai-prices"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
}

DEFAULT_REGISTRY_PATH = project_path("chains/models.yaml")
"""The registry shipped with the project (a source checkout or editable install)."""

ALIAS_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
DEFAULT_MAX_RETRY_AFTER_S = 60.0
"""Providers ask for seconds, rarely a minute; a run that would wait longer is
better served by its next fallback (issue 9: a 600 s Retry-After stalled a run)."""
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class RegistryError(ValueError):
    """The registry file is unreadable or an entry is invalid; the message
    names the file, the alias and the field."""


class ModelEntry(BaseModel):
    """One alias as written in the registry file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: ProviderName
    model: str = Field(min_length=1)
    """The provider's model id, e.g. `gpt-4o-mini`."""
    base_url: str | None = None
    """Defaults: the simulator's URL for `simulator`, the vendor's public API otherwise."""
    api_key_env: str | None = None
    """NAME of the environment variable holding the key (never the key)."""
    prices: ModelPrices | None = None
    """USD per million tokens; overrides genai-prices."""
    price_provider: str | None = None
    """genai-prices provider id to look prices up under; defaults to `provider`."""
    context_window: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    """Deadline of one HTTP call (connect + send + full answer)."""
    heartbeat_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    """How soon a dead worker is noticed while this model is answering."""
    connect_timeout_s: float | None = Field(default=None, gt=0, le=600)
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    """OpenAI reasoning models (o-series, gpt-5) only accept `max_completion_tokens`."""
    max_retry_after_s: float = Field(default=DEFAULT_MAX_RETRY_AFTER_S, ge=0, le=3600)
    """Longest provider Retry-After this alias waits for; a longer one makes
    the alias unavailable for now and the step's next fallback is asked."""
    rpm: int | None = Field(default=None, gt=0)
    """Requests per `rate_window_s` this deployment sends this alias, across
    every worker (shared state: the application database or Redis)."""
    tpm: int | None = Field(default=None, gt=0)
    """Tokens per `rate_window_s`: a call counts its prompt (estimated) plus
    its max_tokens up front and is settled with the real usage."""
    max_concurrent: int | None = Field(default=None, gt=0)
    """Calls to this alias in flight at once, across every worker."""
    rate_window_s: float = Field(default=60.0, gt=0, le=3600)
    """The window `rpm` and `tpm` are counted over (60: per minute)."""

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        # The message never repeats the value: it may be a key pasted by mistake.
        if value is not None and not re.match(ENV_NAME_PATTERN, value):
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits, _), not a key"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")


class RateLimits(BaseModel):
    """What this deployment allows itself to send one alias (None: no limit)."""

    model_config = ConfigDict(frozen=True)

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    window_s: float = 60.0

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_concurrent))


class ResolvedEntry(BaseModel):
    """An entry with every default applied: what the providers call."""

    model_config = ConfigDict(frozen=True)

    alias: str
    provider: ProviderName
    model: str
    base_url: str
    api_key_env: str | None
    prices: ModelPrices
    prices_source: PriceSource
    context_window: int | None
    timeout_s: float
    heartbeat_timeout_s: float
    connect_timeout_s: float
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"]
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S
    limits: RateLimits = RateLimits()

    def info(self) -> ModelInfo:
        return ModelInfo(
            alias=self.alias,
            provider=self.provider,
            model=self.model,
            prices=self.prices,
            context_window=self.context_window,
            timeout_s=self.timeout_s,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
        )


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    models: dict[str, ModelEntry] = Field(min_length=1)


def _format_validation_error(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) >= 2 and loc[0] == "models":
            where = f"alias {loc[1]!r}"
            field = ".".join(str(p) for p in loc[2:])
            where = f"{where}, field {field!r}" if field else where
        else:
            where = "top level" if not loc else f"field {'.'.join(str(p) for p in loc)!r}"
        lines.append(f"{where}: {err['msg']}")
    return f"invalid model registry {source}:\n  " + "\n  ".join(lines)


def _resolve(alias: str, entry: ModelEntry, simulator_base_url: str | None) -> ResolvedEntry:
    """Apply defaults and find a price; ValueError says what is missing."""
    fail = ValueError

    if not re.match(ALIAS_PATTERN, alias):
        raise fail(f"alias must match {ALIAS_PATTERN}")
    if entry.provider == "local":
        return _resolve_local(alias, entry)
    base_url = entry.base_url
    if base_url is None:
        if entry.provider == "simulator":
            if not simulator_base_url:
                raise fail("provider 'simulator' needs base_url or a simulator URL from the worker")
            base_url = simulator_base_url.rstrip("/")
        else:
            base_url = DEFAULT_BASE_URLS[entry.provider]
    if entry.provider != "simulator" and entry.base_url is None and not entry.api_key_env:
        # A self-hosted OpenAI-compatible server may need no key; the vendor's API always does.
        raise fail(f"field 'api_key_env' is required for the public {entry.provider} API")

    priced = lookup(entry.price_provider or entry.provider, entry.model)
    prices_source: PriceSource
    if entry.prices is not None:
        prices, prices_source = entry.prices, "registry"
    elif priced is not None:
        prices, prices_source = priced.prices, "genai-prices"
    else:
        raise fail(
            f"no price: set 'prices' (model {entry.model!r} is unknown to genai-prices "
            f"under provider {entry.price_provider or entry.provider!r})"
        )
    return ResolvedEntry(
        alias=alias,
        provider=entry.provider,
        model=entry.model,
        base_url=base_url,
        api_key_env=entry.api_key_env,
        prices=prices,
        prices_source=prices_source,
        context_window=entry.context_window or (priced.context_window if priced else None),
        timeout_s=entry.timeout_s,
        heartbeat_timeout_s=entry.heartbeat_timeout_s,
        connect_timeout_s=entry.connect_timeout_s or min(10.0, entry.timeout_s),
        max_tokens_param=entry.max_tokens_param,
        max_retry_after_s=entry.max_retry_after_s,
        limits=RateLimits(
            rpm=entry.rpm,
            tpm=entry.tpm,
            max_concurrent=entry.max_concurrent,
            window_s=entry.rate_window_s,
        ),
    )


LOCAL_MODELS: dict[str, tuple[str, int]] = {
    "wordllama-l2-supercat-256": ("l2_supercat", 256),
    "wordllama-l2-supercat-128": ("l2_supercat", 128),
    "wordllama-l2-supercat-64": ("l2_supercat", 64),
}
"""Model ids a `provider: local` entry may name → (WordLlama config,
dimensions); activities/retrieval/local_embeddings.py loads them. Every one
is read from the same shipped weights (smaller dims are the Matryoshka-
truncated 256-d vectors). Checked here so a typo stops the worker at start."""
LOCAL_BASE_URL = "local:"
"""What a `local` entry's base_url reads as: it is never requested."""


def _resolve_local(alias: str, entry: ModelEntry) -> ResolvedEntry:
    """A `local` entry: computed in the worker, so free unless prices say
    otherwise, with no endpoint and no key."""
    if entry.base_url is not None or entry.api_key_env is not None:
        raise ValueError("provider 'local' runs in the worker: remove 'base_url' and 'api_key_env'")
    if entry.model not in LOCAL_MODELS:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise ValueError(f"unknown local embedding model {entry.model!r} (known: {known})")
    return ResolvedEntry(
        alias=alias,
        provider="local",
        model=entry.model,
        base_url=LOCAL_BASE_URL,
        api_key_env=None,
        prices=entry.prices or ModelPrices(input_per_mtok=0, output_per_mtok=0),
        prices_source="registry",
        context_window=entry.context_window,
        timeout_s=entry.timeout_s,
        heartbeat_timeout_s=entry.heartbeat_timeout_s,
        connect_timeout_s=entry.connect_timeout_s or min(10.0, entry.timeout_s),
        max_tokens_param=entry.max_tokens_param,
        max_retry_after_s=entry.max_retry_after_s,
    )


class ModelRegistry:
    """Aliases the worker can call, validated and resolved at load time."""

    def __init__(self, entries: Mapping[str, ResolvedEntry]) -> None:
        self._entries = dict(entries)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        simulator_base_url: str | None = None,
        *,
        source: str = "<dict>",
    ) -> ModelRegistry:
        """Validate `{"models": {alias: entry}}`; raise RegistryError naming
        every bad alias and field."""
        if not isinstance(data, Mapping):
            raise RegistryError(f"invalid model registry {source}: expected a mapping at top level")
        try:
            parsed = _RegistryFile.model_validate(data)
        except ValidationError as exc:
            raise RegistryError(_format_validation_error(source, exc)) from None
        resolved: dict[str, ResolvedEntry] = {}
        problems: list[str] = []
        for alias, entry in parsed.models.items():
            try:
                resolved[alias] = _resolve(alias, entry, simulator_base_url)
            except ValueError as exc:
                problems.append(f"alias {alias!r}: {exc}")
        if problems:
            raise RegistryError(f"invalid model registry {source}:\n  " + "\n  ".join(problems))
        return cls(resolved)

    @classmethod
    def from_file(cls, path: str | Path, simulator_base_url: str | None = None) -> ModelRegistry:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegistryError(f"cannot read model registry {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise RegistryError(f"model registry {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data or {}, simulator_base_url, source=str(path))

    @property
    def aliases(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, alias: object) -> bool:
        return alias in self._entries

    def entry(self, alias: str) -> ResolvedEntry:
        """The resolved entry; KeyError naming the alias and the known ones."""
        try:
            return self._entries[alias]
        except KeyError:
            known = ", ".join(self.aliases) or "none"
            raise KeyError(f"unknown model alias {alias!r} (known: {known})") from None

    def describe(self, alias: str) -> ModelInfo:
        """Prices and limits a workflow may know (no URL, no key variable)."""
        return self.entry(alias).info()
