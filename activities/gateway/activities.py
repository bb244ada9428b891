"""The model gateway's Temporal activities: `call_model` and `describe_models`.

`ModelGateway` holds what a worker process shares across calls (the registry
and one pooled httpx client) and exposes its activities as bound methods, so
the worker registers `gateway.activities` and tests build a gateway on a
registry of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateway import metrics
from activities.gateway.api_keys import read_api_key
from activities.gateway.errors import config_error, content_refused
from activities.gateway.heartbeat import heartbeat_interval, heartbeating
from activities.gateway.journal import CallLedger, ReplyJournal, call_key
from activities.gateway.pacing import CallPacing, install_header_hook
from activities.gateway.providers import (
    ProviderAdapter,
    ProviderReply,
    adapter_for,
    encodable_reply,
)
from activities.gateway.registry import ModelRegistry, ResolvedEntry
from activities.gateway.schema_check import InvalidSchemaError, check_json_output, check_schema
from activities.gateway.tracing import provider_call_span, record_reply
from activities.gateway.types import (
    DescribeModelsInput,
    DescribeModelsResult,
    ModelCallInput,
    ModelCallResult,
    prompt_tokens_bound,
)
from activities.http_client import OwnsHttpClient
from activities.logging import activity_logger
from core.names import CALL_MODEL, DESCRIBE_MODELS

LOGGER_NAME = "chorus.gateway"


class ModelGateway(OwnsHttpClient):
    """Calls models by alias. One instance per worker process."""

    def __init__(
        self,
        registry: ModelRegistry,
        http: httpx.AsyncClient | None = None,
        journal: ReplyJournal | None = None,
        pacing: CallPacing | None = None,
    ) -> None:
        super().__init__(
            http, limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
        )
        self.registry = registry
        self.journal = journal
        """Where attempts and raw replies are journaled, so a retry reuses a
        reply already paid for and counts what may have been billed unseen
        (None: off)."""
        self.pacing = pacing or CallPacing()
        """Rate limits across workers, and when a failed attempt is retried."""
        install_header_hook(self._http)

    @property
    def activities(self) -> Sequence[Callable[..., Any]]:
        """The bound activity methods to register on a worker."""
        return [self.call_model, self.describe_models]

    # -- activities -------------------------------------------------------

    @activity.defn(name=CALL_MODEL)
    async def call_model(self, req: ModelCallInput) -> ModelCallResult:
        """`_call_model`, counted in Chorus' metrics (activities/metrics.py)."""
        known = req.alias in self.registry
        alias = req.alias if known else metrics.UNKNOWN
        provider = self.registry.entry(req.alias).provider if known else metrics.UNKNOWN
        started = metrics.model_call_started(alias, provider, activity.info().attempt)
        try:
            result = await self._call_model(req)
        except BaseException as exc:
            metrics.model_call_ended(alias, provider, started, exc=exc)
            raise
        metrics.model_call_ended(alias, provider, started, result)
        return result

    async def _call_model(self, req: ModelCallInput) -> ModelCallResult:
        """One provider call. Raises `ApplicationError` typed by
        `ProviderErrorType`; an invalid structured reply is returned, not raised.

        `req.tools` are offered to the model and the calls it makes come back
        in `tool_calls` (the workflow runs them and calls again with the
        results); tools and a JSON schema together are a ModelConfigError."""
        info = activity.info()
        log = activity_logger(LOGGER_NAME, step=req.step, alias=req.alias)
        entry = self._entry(req.alias)
        log = log.bind(provider=entry.provider, model=entry.model)
        api_key = read_api_key(entry)
        if req.json_schema is not None and req.tools:
            # A structured-output step answers in one JSON value; a tool-calling
            # turn may answer with calls instead. Mixing them is a chain bug.
            raise config_error(
                f"step {req.step!r} on alias {req.alias!r} gives both a JSON schema and "
                f"{len(req.tools)} tool(s); a structured-output step cannot call tools"
            )
        if req.json_schema is not None:
            try:
                check_schema(req.json_schema)
            except InvalidSchemaError as exc:
                raise config_error(f"step {req.step!r} on alias {req.alias!r}: {exc}") from None
        if entry.provider == "local":
            raise config_error(
                f"step {req.step!r}: alias {req.alias!r} is a local embedding model "
                f"({entry.model}); it embeds retrieval passages and answers no model step"
            )
        adapter = adapter_for(entry.provider)
        request_id = call_key(info)
        ledger: CallLedger | None = None
        if self.journal is not None:
            worst_case = entry.prices.worst_case(prompt_tokens_bound(req), req.max_tokens)
            ledger = await self.journal.open(info, entry.alias, worst_case)
        journaled = _journaled_reply(ledger, adapter, entry, log)
        permit, seen_headers = None, self.pacing.collect_headers()
        if journaled is not None:
            reply, latency_ms = journaled
        else:
            # Over the alias's limits: a typed wait, before anything is sent.
            permit = await self.pacing.admit(entry, req)
            if ledger is not None:
                await ledger.sending()  # in flight before the request leaves
            started = time.perf_counter()
            received: list[float] = []

            async def on_reply(raw: dict[str, Any]) -> None:
                received.append((time.perf_counter() - started) * 1000)
                if ledger is not None:  # journaled before anything parses it
                    await ledger.received(raw, received[0])

            beat = ledger.heartbeat_details() if ledger is not None else None
            try:
                with provider_call_span(entry, req) as span:
                    async with heartbeating(
                        heartbeat_interval(entry.heartbeat_timeout_s), *([beat] if beat else [])
                    ):
                        reply = await adapter.complete(
                            self._http, entry, api_key, req, request_id, on_reply
                        )
                    record_reply(span, entry, reply)
            except ApplicationError as failure:
                exc = await self.pacing.failed(permit, entry, req, failure, seen_headers)
                log.warning(
                    "model_call.failed",
                    error_type=exc.type,
                    retryable=not exc.non_retryable,
                    retry_in_s=exc.next_retry_delay.total_seconds()
                    if exc.next_retry_delay
                    else None,
                    latency_ms=round((time.perf_counter() - started) * 1000, 1),
                    message=exc.message,
                )
                if ledger is not None:
                    raise await ledger.failed(exc) from None
                raise exc from None
            await self.pacing.done(permit, entry, reply.usage, seen_headers)
            latency_ms = received[0] if received else (time.perf_counter() - started) * 1000
        # Paid for: whatever the reply holds must reach the workflow.
        reply = encodable_reply(reply)
        cost = entry.prices.cost(reply.usage)

        if reply.refused:
            log.warning("model_call.refused", finish_reason=reply.finish_reason, cost_usd=cost)
            # Usage travels with the error: a refusal is billed like an answer.
            refused = content_refused(
                adapter.name,
                entry.alias,
                reply.refusal or f"finish_reason {reply.finish_reason}",
                {"usage": reply.usage.model_dump(), "cost_usd": cost},
            )
            raise (await ledger.failed(refused) if ledger is not None else refused)

        parsed: Any | None = None
        schema_errors: list[str] | None = None
        if req.json_schema is not None:
            parsed, schema_errors = check_json_output(reply.text, req.json_schema)

        log.info(
            "model_call.done",
            answered_by=reply.model,
            finish_reason=reply.finish_reason,
            input_tokens=reply.usage.input_tokens,
            output_tokens=reply.usage.output_tokens,
            cached_input_tokens=reply.usage.cached_input_tokens,
            cost_usd=cost,
            latency_ms=round(latency_ms, 1),
            schema_valid=None if req.json_schema is None else schema_errors is None,
            tools_offered=len(req.tools or ()),
            tool_calls=len(reply.tool_calls),
        )
        result = ModelCallResult(
            alias=entry.alias,
            provider=adapter.name,
            model=reply.model,
            text=reply.text,
            parsed=parsed,
            schema_errors=schema_errors,
            finish_reason=reply.finish_reason,
            tool_calls=list(reply.tool_calls),
            usage=reply.usage,
            cost_usd=cost,
            latency_ms=latency_ms,
            unconfirmed_usd=ledger.unconfirmed_usd if ledger is not None else 0.0,
            unconfirmed_attempts=ledger.unconfirmed_attempts if ledger is not None else 0,
        )
        if result.unconfirmed_attempts:
            log.warning(
                "model_call.unconfirmed_attempts",
                attempts=result.unconfirmed_attempts,
                unconfirmed_usd=result.unconfirmed_usd,
            )
        return result

    @activity.defn(name=DESCRIBE_MODELS)
    async def describe_models(self, req: DescribeModelsInput) -> DescribeModelsResult:
        """Prices and limits of the aliases a run will use (run as a local
        activity so the snapshot lands in history and replays identically)."""
        models = {a: self.registry.describe(a) for a in req.aliases if a in self.registry}
        unknown = sorted({a for a in req.aliases if a not in self.registry})
        return DescribeModelsResult(models=models, unknown=unknown)

    # -- helpers ------------------------------------------------------------

    def _entry(self, alias: str) -> ResolvedEntry:
        if alias not in self.registry:
            known = ", ".join(self.registry.aliases) or "none"
            raise config_error(
                f"unknown model alias {alias!r}: this worker's registry knows {known}"
            )
        return self.registry.entry(alias)


def _journaled_reply(
    ledger: CallLedger | None, adapter: ProviderAdapter, entry: ResolvedEntry, log: Any
) -> tuple[ProviderReply, float] | None:
    """An earlier attempt's raw reply, parsed, with its latency: the provider
    answered (and billed) it before that attempt's worker died or missed a
    heartbeat, so it is used instead of paying again. A journaled reply that
    does not parse, and any further one, count as unconfirmed."""
    if ledger is None:
        return None
    found: tuple[ProviderReply, float] | None = None
    for earlier in list(ledger.reusable):
        if found is not None:
            ledger.unusable(earlier)
            continue
        try:
            reply = adapter.parse(entry, earlier.raw_reply or {})
        except ApplicationError:
            ledger.unusable(earlier)
            continue
        log.info("model_call.reused", request_id=ledger.request_id, from_attempt=earlier.attempt)
        metrics.MODEL_REPLIES_REUSED.labels(entry.alias, entry.provider).inc()
        found = (reply, earlier.latency_ms or 0.0)
    return found
