"""What the simulated model answers, independent of the provider's wire shape.

Both dialects (OpenAI chat completions, Anthropic messages) parse their body
into a `ChatRequest`, and render the `ReplyPlan` built here. Keeping the
decision in one place means both APIs behave the same for the same script.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator import tokens
from simulator.models import SimModel, ToolCallSpec, ToolResultSeen
from simulator.quality import quality_reply, quality_structured_reply
from simulator.schema_instance import minimal_instance
from simulator.state import Endpoint, RuleUse

DEFAULT_REFUSAL = "I'm sorry, but I can't help with that request."

Finish = Literal["stop", "length", "tool_calls", "refusal"]


@dataclass
class ForcedTool:
    """A tool the request forces the model to call (tool_choice naming one)."""

    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolDef:
    """A tool offered with a request (OpenAI `function`, Anthropic tool)."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass
class ChatRequest:
    """A chat request in provider-neutral form."""

    endpoint: Endpoint
    model: str
    request_id: str | None
    message_texts: list[str]
    """One text per message, the system prompt first when there is one."""
    last_user_text: str
    max_tokens: int | None = None
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None
    forced_tool: ForcedTool | None = None
    tools: list[ToolDef] = field(default_factory=list)
    tool_results: list[ToolResultSeen] = field(default_factory=list)
    """The tool results that end the conversation (see `tool_turns`)."""

    @property
    def prompt(self) -> str:
        return "\n".join(self.message_texts)

    @property
    def prompt_tokens(self) -> int:
        """Messages plus the tool definitions: real APIs bill tools as input."""
        return tokens.prompt_tokens(self.message_texts) + sum(
            tokens.tool_definition_tokens(t.name, t.description, t.parameters) for t in self.tools
        )


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cache_creation_tokens": self.cache_creation_tokens,
        }


@dataclass
class ReplyPlan:
    text: str | None
    finish: Finish
    usage: Usage
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    tool_call_ids: list[str] = field(default_factory=list)
    refusal: str | None = None

    @property
    def logged_reply(self) -> str | None:
        return self.refusal if self.refusal is not None else self.text


_SCHEMA_MARKER = re.compile(r"JSON Schema:\s*", re.IGNORECASE)


def schema_from_instructions(system_text: str) -> dict[str, Any] | None:
    """A JSON schema the system prompt asks the reply to follow, if any.

    APIs without a response_format (Anthropic Messages) get the schema as an
    instruction ("... valid against this JSON Schema: {...}"); a real model
    follows it, so the simulator's default reply does too.
    """
    for marker in _SCHEMA_MARKER.finditer(system_text):
        try:
            schema, _ = json.JSONDecoder().raw_decode(system_text, marker.end())
        except json.JSONDecodeError:
            continue
        if isinstance(schema, dict):
            return schema
    return None


_CITATION = re.compile(r"\[([A-Za-z0-9_.\-/]+#\d+)\]")


def default_text(model: str, last_user_text: str) -> str:
    """The unscripted answer. When the prompt offers sources marked
    `[document#position]` (a grounded prompt), the answer cites the first
    one, as a model following the instructions would: demos and tests of
    citation checks then work without scripting."""
    text = f"[simulated {model}] reply to: {last_user_text[:80]}"
    cited = _CITATION.search(last_user_text)
    return f"{text} [{cited.group(1)}]" if cited else text


def _default_reply(request: ChatRequest, model: SimModel) -> str | list[ToolCallSpec]:
    """The unscripted reply. Offered tools are NOT called unless tool_choice
    forces one: an agent loop over an unscripted simulator must terminate, so
    the default model answers in text, before and after tool results alike.
    A model with a quality profile answers from its prompt instead of echoing."""
    if request.forced_tool is not None:
        arguments = minimal_instance(request.forced_tool.parameters or {"type": "object"})
        return [
            ToolCallSpec(
                name=request.forced_tool.name,
                arguments=arguments if isinstance(arguments, dict) else {},
            )
        ]
    profile = model.quality
    if request.json_schema is not None:
        if profile is not None:
            return json.dumps(
                quality_structured_reply(
                    profile, request.model, request.last_user_text, request.json_schema
                )
            )
        return json.dumps(minimal_instance(request.json_schema))
    if profile is not None:
        text = quality_reply(profile, request.model, request.last_user_text)
    else:
        text = default_text(request.model, request.last_user_text)
    if request.json_mode:
        return json.dumps({"answer": text})
    return text


_ID_PREFIXES: dict[Endpoint, str] = {"chat": "call_sim_", "messages": "toolu_sim_"}


def tool_call_id(request: ChatRequest, index: int) -> str:
    """A call id derived from the conversation, so the same request always
    gets the same ids. Unique within a conversation: each turn's prompt is
    longer than the last one's."""
    digest = hashlib.sha256(f"{request.model}\n{request.prompt}\n{index}".encode()).hexdigest()
    return _ID_PREFIXES.get(request.endpoint, "call_sim_") + digest[:24]


def build_reply(request: ChatRequest, model: SimModel, use: RuleUse | None) -> ReplyPlan:
    """Decide the reply: the matched rule's script, else the default reply."""
    rule = use.rule if use is not None else None
    text: str | None = None
    tool_calls: list[ToolCallSpec] = []
    if rule is not None:
        if rule.replies is not None:
            text = rule.replies[min(use.index, len(rule.replies) - 1)]  # type: ignore[union-attr]
        elif rule.json_ is not None:
            text = json.dumps(rule.json_)
        else:
            text = rule.reply
        tool_calls = list(rule.tool_calls or [])

    refusal: str | None = None
    if rule is not None and rule.refusal:
        refusal, text = text or DEFAULT_REFUSAL, None
    elif text is None and not tool_calls:
        default = _default_reply(request, model)
        if isinstance(default, str):
            text = default
        else:
            tool_calls = default

    finish: Finish = "tool_calls" if tool_calls else "refusal" if refusal is not None else "stop"
    if (
        text is not None
        and request.max_tokens is not None
        and tokens.completion_tokens(text) > request.max_tokens
    ):
        text = tokens.truncate_to_tokens(text, request.max_tokens)
        finish = "length"

    counted = (refusal or text or "") + "".join(
        tokens.tool_call_text(call.name, call.arguments) for call in tool_calls
    )
    prompt = request.prompt_tokens
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=tokens.completion_tokens(counted) + model.reasoning_tokens,
        cached_tokens=min(model.cached_prompt_tokens, prompt),
        reasoning_tokens=model.reasoning_tokens,
    )
    if rule is not None and rule.usage:
        for key, value in rule.usage.items():
            setattr(usage, key, value)
    ids = [call.id or tool_call_id(request, i) for i, call in enumerate(tool_calls)]
    return ReplyPlan(
        text=text,
        finish=finish,
        usage=usage,
        tool_calls=tool_calls,
        tool_call_ids=ids,
        refusal=refusal,
    )
