"""The demo's sample tickets: five customer messages to Larkspur Outfitters,
each with the classifier verdict the simulator is scripted to give and what
the demo's stand-in reviewer does when the chain asks for approval.

Kept in code rather than beside chains/sample_data/order_desk.yaml: that file
is data the worker's tools read at run time, while these tickets are the
demo's script (a scripted verdict, a review decision), read by the demo and
its tests only, and typed where they are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Verdict:
    """What the classifier step answers for one ticket (scripted: see
    simulator_script.py)."""

    category: str
    complexity: Literal["simple", "complex"]
    confidence: float
    urgency: str = "normal"

    def as_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "complexity": self.complexity,
            "urgency": self.urgency,
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class SampleTicket:
    """One customer message and how the demo's stand-in reviewer treats it
    when the chain asks for approval."""

    id: str
    customer_name: str
    message: str
    verdict: Verdict
    review: Literal["approve", "edit"] = "approve"
    edited_reply: str | None = None

    @property
    def input(self) -> dict[str, str]:
        return {"message": self.message, "customer_name": self.customer_name}


SAMPLE_TICKETS: tuple[SampleTicket, ...] = (
    SampleTicket(
        id="shipping-canada",
        customer_name="Maya",
        message="Do you ship to Canada, and how long does delivery usually take?",
        verdict=Verdict("shipping", "simple", 0.95, "low"),
    ),
    SampleTicket(
        id="tent-pole-warranty",
        customer_name="Jonas",
        message=(
            "My tent pole snapped on the second trip. Is that covered by the warranty, "
            "and what do I need to send you?"
        ),
        verdict=Verdict("product", "complex", 0.9),
    ),
    SampleTicket(
        id="boots-refund",
        customer_name="Priya",
        message=(
            "I returned the hiking boots two weeks ago and still have no refund. "
            "When will I get my money back?"
        ),
        verdict=Verdict("refund", "complex", 0.92, "high"),
        review="edit",
        edited_reply=(
            "Hi Priya, sorry for the wait. We issue your refund as soon as the boots are "
            "checked in at our returns center, and a card refund then takes 5 to 10 business "
            "days to show. I have asked the team to check yours today. Happy trails, Larkspur"
        ),
    ),
    SampleTicket(
        id="not-what-i-expected",
        customer_name="Sam",
        message="The thing I got last week isn't what I expected. Can you sort it out?",
        verdict=Verdict("return", "complex", 0.45),
    ),
    SampleTicket(
        id="password-reset",
        customer_name="Lee",
        message="How do I reset my account password?",
        verdict=Verdict("account", "simple", 0.9, "low"),
    ),
)
