"""Mutable state of one simulator: scripted rules, pending faults, call log.

All access happens on the server's event loop and no method awaits, so the
state needs no lock: each method runs to completion before another request's
code can interleave.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

from simulator.models import CallOutcome, CallRecord, Fault, ProviderLimit, Rule
from simulator.rate_limits import ProviderLimits

Endpoint = Literal["chat", "messages", "embeddings"]


@dataclass
class _RuleSlot:
    rule: Rule
    uses: int = 0

    def has_uses_left(self) -> bool:
        return self.rule.times is None or self.uses < self.rule.times


@dataclass
class _FaultSlot:
    fault: Fault
    uses: int = 0


@dataclass
class RuleUse:
    """A rule picked for one call, and which of its successive replies to give."""

    slot: _RuleSlot
    index: int

    @property
    def rule(self) -> Rule:
        return self.slot.rule


@dataclass
class SimulatorState:
    _rules: list[_RuleSlot] = field(default_factory=list)
    _faults: list[_FaultSlot] = field(default_factory=list)
    _calls: list[CallRecord] = field(default_factory=list)
    _seq: int = 0
    _limits: dict[str, ProviderLimit] = field(default_factory=dict)
    usage_windows: ProviderLimits = field(default_factory=ProviderLimits)
    """Requests and tokens counted against the models' rate limits."""
    reply_listeners: list[Callable[[CallRecord], None]] = field(default_factory=list)
    """Called on the server's thread the instant a completed call's reply has
    been sent (`reply_sent`): an in-process hook for benchmarks that act at
    that instant, such as killing the client (bench/kill_window.py)."""

    def reset(self) -> None:
        self._rules.clear()
        self._faults.clear()
        self._calls.clear()
        self._seq = 0
        self._limits.clear()
        self.usage_windows.reset()

    def set_limits(self, limits: list[ProviderLimit]) -> None:
        """Provider-side limits per model, over the configuration's, until reset."""
        self._limits.update({limit.model: limit for limit in limits})

    def limit_for(self, model: str, configured: list[ProviderLimit]) -> ProviderLimit | None:
        if model in self._limits:
            return self._limits[model]
        return next((limit for limit in configured if limit.model == model), None)

    def add_rules(self, rules: list[Rule]) -> None:
        self._rules.extend(_RuleSlot(rule) for rule in rules)

    def add_faults(self, faults: list[Fault]) -> None:
        self._faults.extend(_FaultSlot(fault) for fault in faults)

    def take_fault(self, *, model: str, request_id: str | None, prompt: str) -> Fault | None:
        """Consume one use of the first matching fault that has uses left."""
        for slot in self._faults:
            if slot.uses < slot.fault.times and slot.fault.applies_to(
                model=model, request_id=request_id, prompt=prompt
            ):
                slot.uses += 1
                return slot.fault
        return None

    def take_rule(
        self,
        *,
        model: str,
        request_id: str | None,
        prompt: str,
        tool_results: Collection[str] = (),
    ) -> RuleUse | None:
        """Consume one use of the first matching rule that has uses left.

        `tool_results` names the tools whose results end the conversation
        (what `Rule.after_tool` matches)."""
        for slot in self._rules:
            if slot.has_uses_left() and slot.rule.applies_to(
                model=model, request_id=request_id, prompt=prompt, tool_results=tool_results
            ):
                slot.uses += 1
                return RuleUse(slot, slot.uses - 1)
        return None

    @staticmethod
    def give_back(use: RuleUse) -> None:
        """Return a use whose reply never reached the client (aborted call)."""
        use.slot.uses = max(0, use.slot.uses - 1)

    def start_call(
        self, *, endpoint: Endpoint, model: str, request_id: str | None, prompt: str
    ) -> CallRecord:
        self._seq += 1
        record = CallRecord(
            seq=self._seq,
            endpoint=endpoint,
            model=model,
            request_id=request_id,
            prompt=prompt,
            started_at=time.time(),
        )
        self._calls.append(record)
        return record

    @staticmethod
    def finish_call(
        record: CallRecord,
        *,
        outcome: CallOutcome,
        status: int,
        usage: dict[str, int] | None = None,
        reply: str | None = None,
        error: str | None = None,
    ) -> None:
        record.finished_at = time.time()
        record.outcome = outcome
        record.status = status
        record.usage = usage
        record.reply = reply
        record.error = error

    def reply_sent(self, request_id: str | None) -> None:
        """The reply to the latest completed call of `request_id` has been
        sent: stamp it and tell the listeners."""
        for record in reversed(self._calls):
            if record.request_id == request_id and record.outcome == "completed":
                if record.sent_at is None:
                    record.sent_at = time.time()
                    for listener in list(self.reply_listeners):
                        listener(record)
                return

    def calls(
        self,
        *,
        request_id_prefix: str | None = None,
        model: str | None = None,
        include_pending: bool = False,
    ) -> list[CallRecord]:
        """The call log in arrival order, filtered."""
        return [
            record
            for record in self._calls
            if (include_pending or record.outcome != "pending")
            and (model is None or record.model == model)
            and (
                request_id_prefix is None
                or (
                    record.request_id is not None
                    and record.request_id.startswith(request_id_prefix)
                )
            )
        ]
