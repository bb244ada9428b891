"""A run's cost ledger: reserve the worst case first, settle to the actual.

Workflow code runs one coroutine at a time, so a reservation made before an
activity is scheduled is atomic with respect to parallel branches: the sum of
what is spent and what is reserved never exceeds the cap, and a call whose
worst case does not fit is never made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from activities.gateway.types import ChatMessage

_EPSILON = 1e-12
_MESSAGE_OVERHEAD_TOKENS = 8


class BudgetExceededError(Exception):
    def __init__(self, needed_usd: float, available_usd: float, label: str) -> None:
        self.needed_usd = needed_usd
        self.available_usd = available_usd
        self.label = label
        super().__init__(
            f"budget exceeded: {label} needs up to ${needed_usd:.6f} "
            f"but only ${max(available_usd, 0.0):.6f} of the run's budget is left"
        )


@dataclass
class Reservation:
    label: str
    amount_usd: float
    open: bool = True


class Budget:
    def __init__(self, max_cost_usd: float | None) -> None:
        self.max_cost_usd = max_cost_usd
        self.spent_usd = 0.0
        self.reserved_usd = 0.0

    @property
    def available_usd(self) -> float | None:
        if self.max_cost_usd is None:
            return None
        return self.max_cost_usd - self.spent_usd - self.reserved_usd

    def reserve(self, amount_usd: float, label: str) -> Reservation:
        available = self.available_usd
        if available is not None and amount_usd > available + _EPSILON:
            raise BudgetExceededError(amount_usd, available, label)
        self.reserved_usd += amount_usd
        return Reservation(label=label, amount_usd=amount_usd)

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the reservation by what the call really cost."""
        self._close(reservation)
        self.spent_usd += actual_usd

    def release(self, reservation: Reservation) -> None:
        """A call that failed before the provider billed it costs nothing."""
        self._close(reservation)

    def _close(self, reservation: Reservation) -> None:
        if not reservation.open:
            raise RuntimeError(f"reservation for {reservation.label} already closed")
        reservation.open = False
        self.reserved_usd = max(0.0, self.reserved_usd - reservation.amount_usd)


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """An upper bound of the prompt's token count.

    BPE tokenizers emit at most one token per UTF-8 byte, so the byte length
    plus a per-message framing allowance never undercounts; a reservation
    built on it cannot be exceeded by the provider's real count.
    """
    return _MESSAGE_OVERHEAD_TOKENS + sum(
        len(m.content.encode("utf-8")) + _MESSAGE_OVERHEAD_TOKENS for m in messages
    )
