"""The provider call's span (`core.tracing`): a CLIENT span around the HTTP
request a model call makes, child of the activity's span, so the run's
trace shows which alias answered, on which provider and model, with how many
tokens at what cost.

Attribute names follow OpenTelemetry's GenAI conventions where they exist
(`gen_ai.*`), Chorus' own otherwise (`chorus.*`). Prompt and reply text are
recorded only with `CHORUS_TRACE_CONTENT=true`; request headers (API keys)
and error bodies never are: a failure is its error type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from temporalio.exceptions import ApplicationError

from activities.gateway.providers import ProviderReply
from activities.gateway.registry import ResolvedEntry
from activities.gateway.types import ModelCallInput
from core import tracing


@contextmanager
def provider_call_span(entry: ResolvedEntry, req: ModelCallInput) -> Iterator[Span]:
    """A span around one provider request; `record_reply` fills in the answer."""
    url = urlsplit(entry.base_url)
    attributes: dict[str, str | int] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": entry.provider,
        "gen_ai.request.model": entry.model,
        "gen_ai.request.max_tokens": req.max_tokens,
        "chorus.alias": entry.alias,
        "chorus.provider": entry.provider,
        "chorus.model": entry.model,
        "chorus.step": req.step,
        "server.address": url.hostname or "",
    }
    if url.port is not None:
        attributes["server.port"] = url.port
    if tracing.content_enabled():
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        attributes["chorus.prompt"] = tracing.clip(json.dumps(messages, ensure_ascii=False))
    with tracing.tracer().start_as_current_span(
        f"chat {entry.model}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except ApplicationError as exc:
            span.set_attribute("error.type", exc.type or type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, exc.type))
            raise
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def record_reply(span: Span, entry: ResolvedEntry, reply: ProviderReply) -> None:
    """The reply's model, tokens and cost on the call's span."""
    usage = reply.usage
    span.set_attributes(
        {
            "gen_ai.response.model": reply.model,
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "chorus.usage.cached_input_tokens": usage.cached_input_tokens,
            "chorus.usage.reasoning_tokens": usage.reasoning_tokens,
            "chorus.cost_usd": entry.prices.cost(usage),
        }
    )
    if reply.finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [reply.finish_reason])
    if tracing.content_enabled():
        span.set_attribute("chorus.reply", tracing.clip(reply.text))
