"""A run's cost ledger: reserve the worst case first, settle to the actual.

Workflow code runs one coroutine at a time, so a reservation made before an
activity is scheduled is atomic with respect to parallel branches: the sum of
what is spent and what is reserved never exceeds the cap, and a call whose
worst case does not fit is never made.

What a call may have cost without anyone seeing the bill (an attempt whose
worker died after the request left: `ModelCallResult.unconfirmed_usd`) is
spent like the rest, at its worst case, so the budget never counts less than
the provider may charge; `unconfirmed_usd` says how much of `spent_usd` that is.
"""

from __future__ import annotations

from dataclasses import dataclass

_EPSILON = 1e-12


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
        self.unconfirmed_usd = 0.0
        """The part of `spent_usd` counted at worst case, unconfirmed."""

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

    def settle(
        self, reservation: Reservation, actual_usd: float, unconfirmed_usd: float = 0.0
    ) -> None:
        """Replace the reservation by what the call really cost, plus what it
        may have cost unseen (counted at worst case)."""
        self._close(reservation)
        self.charge(actual_usd, unconfirmed_usd)

    def charge(self, actual_usd: float, unconfirmed_usd: float = 0.0) -> None:
        """Count money spent without a reservation of its own (an agent of
        a run with no cap reserves nothing, but spends)."""
        self.spent_usd += actual_usd + unconfirmed_usd
        self.unconfirmed_usd += unconfirmed_usd

    def release(self, reservation: Reservation) -> None:
        """A call that failed before the provider billed it costs nothing."""
        self._close(reservation)

    def _close(self, reservation: Reservation) -> None:
        if not reservation.open:
            raise RuntimeError(f"reservation for {reservation.label} already closed")
        reservation.open = False
        self.reserved_usd = max(0.0, self.reserved_usd - reservation.amount_usd)
