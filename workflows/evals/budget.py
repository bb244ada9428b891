"""An evaluation's budget: which case may start, and the cap its child run gets.

Every child run in flight holds a reservation equal to its cap (the most it
may spend: the chain's own limit, lowered to what is left of the budget), so
spent + reserved never passes `max_cost_usd`. A case starts only when what is
left unreserved covers the most a case of its variant has cost so far, and
with less than its chain's own limit only when no case is in flight (else it
waits for their reservations to come back, rather than run with a cap that
could cut it short); when nothing is in flight to free a reservation and
the budget still cannot cover a case, the evaluation stops starting cases
(`stopped_reason`). Pure and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STOPPED_BY_BUDGET = "max_cost_usd reached"
STOPPED_BY_CANCEL = "cancelled"


@dataclass
class EvalBudget:
    max_cost_usd: float | None
    spent_usd: float = 0.0
    observed_max_usd: dict[str, float] = field(default_factory=dict)
    reserved: dict[str, float] = field(default_factory=dict)
    """Reservation of each case in flight, by case key."""

    @property
    def reserved_usd(self) -> float:
        return sum(self.reserved.values())

    @property
    def free_usd(self) -> float | None:
        if self.max_cost_usd is None:
            return None
        return self.max_cost_usd - self.spent_usd - self.reserved_usd

    def cap_for(
        self, variant: str, chain_limit: float | None, *, free_slots: int = 1
    ) -> float | bool | None:
        """The cap a new case of `variant` runs with: a float, None (no cap:
        neither the evaluation nor the chain has one), or False when the
        budget cannot cover it now. A chain without a limit of its own gets
        an equal share of what is left among the `free_slots` it competes
        with, so one case never reserves the whole budget."""
        free = self.free_usd
        if free is None:
            return chain_limit
        ceiling = chain_limit if chain_limit is not None else free / max(1, free_slots)
        cap = min(ceiling, free)
        if cap <= 0 or cap < self.observed_max_usd.get(variant, 0.0):
            return False
        return cap

    def tight(self, cap: float | None, chain_limit: float | None) -> bool:
        """Whether `cap` is below what the chain itself allows: a case started
        with it might be cut short by the evaluation's budget alone, so it
        should wait for the cases in flight to give back their reservations."""
        return cap is not None and chain_limit is not None and cap < chain_limit

    def reserve(self, key: str, cap: float | None) -> None:
        self.reserved[key] = cap if cap is not None and self.max_cost_usd is not None else 0.0

    def settle(self, key: str, variant: str, cost_usd: float) -> None:
        """The case's run ended having cost `cost_usd` (judge included)."""
        self.reserved.pop(key, None)
        self.spent_usd += cost_usd
        self.observed_max_usd[variant] = max(self.observed_max_usd.get(variant, 0.0), cost_usd)
