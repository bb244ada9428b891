"""Builtin sample tools: the order desk of Larkspur Outfitters, the fictional
outdoor-gear store of the flagship support chain and its help center.

The orders come from a data file (chains/sample_data/order_desk.yaml, read by
`activities.tools.order_data`), so demos and tests see the same data every
time. Orders never change; what the tools do (refunds, tickets) goes to the
desk's ledger (`activities.tools.order_ledger`).

`issue_refund` is the example of a non-idempotent tool done right: it takes
an idempotency key and records it with the refund in one transaction, so a
retried call returns the first refund instead of paying twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Annotated, TypedDict

from pydantic import BaseModel, Field

from activities.tools.errors import ToolError
from activities.tools.order_data import (
    Email,
    Order,
    OrderId,
    OrderStatus,
    TrackingEvent,
    load_orders,
)
from activities.tools.order_ledger import (
    OrderLedger,
    Priority,
    Refund,
    Ticket,
    cents,
    dollars,
)
from activities.tools.registry import ToolRegistry

# -- tool results -----------------------------------------------------------------


class OrderLookup(BaseModel):
    found: bool
    order_id: str
    order: Order | None = None
    refunded: float = 0.0
    """Refunds already issued on this order."""
    refundable: float = 0.0
    """What can still be refunded (total minus refunds)."""
    message: str = ""


class ShipmentTracking(BaseModel):
    found: bool
    order_id: str
    status: OrderStatus | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    shipped_on: date | None = None
    estimated_delivery: date | None = None
    delivered_on: date | None = None
    events: list[TrackingEvent] = Field(default_factory=list)
    message: str = ""


class OrderSummary(BaseModel):
    order_id: str
    status: OrderStatus
    placed_on: date
    total: float
    items: list[str]


class CustomerOrders(BaseModel):
    email: str
    orders: list[OrderSummary]


class OrderDesk:
    """The store's orders (read-only, from the data file unless `orders` are
    given) and its ledger of refunds and tickets (SQLite at `path`). Safe to
    share between the worker threads that run sync tools."""

    def __init__(
        self, path: str | Path = ":memory:", orders: Iterable[Order] | None = None
    ) -> None:
        if orders is None:
            orders = load_orders()
        self._orders = {order.order_id: order for order in orders}
        self._ledger = OrderLedger(path)

    def close(self) -> None:
        self._ledger.close()

    # -- observable state (tests, demos) ------------------------------------

    @property
    def orders(self) -> list[Order]:
        return list(self._orders.values())

    @property
    def refunds(self) -> list[Refund]:
        """Every refund issued, oldest first."""
        return self._ledger.refunds

    @property
    def tickets(self) -> list[Ticket]:
        return self._ledger.tickets

    def refunded(self, order_id: str) -> float:
        return dollars(self._ledger.refunded_cents(order_id))

    # -- tools ------------------------------------------------------------------

    def lookup_order(self, order_id: OrderId) -> OrderLookup:
        """Look up an order by its number: status, items, totals, shipping and
        how much of it can still be refunded."""
        order = self._orders.get(order_id)
        if order is None:
            return OrderLookup(found=False, order_id=order_id, message=f"no order {order_id}")
        refunded = self.refunded(order_id)
        return OrderLookup(
            found=True,
            order_id=order_id,
            order=order,
            refunded=refunded,
            refundable=round(order.total - refunded, 2) if order.status != "cancelled" else 0.0,
        )

    def track_shipment(self, order_id: OrderId) -> ShipmentTracking:
        """Carrier, tracking number, delivery estimate and tracking events of
        an order's shipment."""
        order = self._orders.get(order_id)
        if order is None:
            return ShipmentTracking(found=False, order_id=order_id, message=f"no order {order_id}")
        message = "" if order.carrier else f"order {order_id} has not shipped yet ({order.status})"
        return ShipmentTracking(
            found=True,
            order_id=order_id,
            status=order.status,
            carrier=order.carrier,
            tracking_number=order.tracking_number,
            shipped_on=order.shipped_on,
            estimated_delivery=order.estimated_delivery,
            delivered_on=order.delivered_on,
            events=order.events,
            message=message,
        )

    def customer_orders(self, email: Email) -> CustomerOrders:
        """All orders placed with an email address, newest first."""
        orders = sorted(
            (o for o in self._orders.values() if o.email == email),
            key=lambda o: o.placed_on,
            reverse=True,
        )
        return CustomerOrders(
            email=email,
            orders=[
                OrderSummary(
                    order_id=o.order_id,
                    status=o.status,
                    placed_on=o.placed_on,
                    total=o.total,
                    items=[f"{i.quantity} x {i.name}" for i in o.items],
                )
                for o in orders
            ],
        )

    def issue_refund(
        self,
        order_id: OrderId,
        amount: Annotated[float, Field(gt=0, le=100_000, description="Amount in USD")],
        reason: Annotated[str, Field(min_length=3, max_length=500)],
        idempotency_key: str | None,
    ) -> Refund:
        """Refund part or all of an order to the original payment method.

        Args:
            order_id: The order to refund.
            reason: Why the customer is refunded (shown on the refund email).
        """
        if not idempotency_key:
            raise ToolError("issue_refund needs an idempotency key", non_retryable=True)
        order = self._orders.get(order_id)
        if order is None:
            raise ToolError(f"no order {order_id}", non_retryable=True)
        if order.status == "cancelled":
            raise ToolError(
                f"order {order_id} was cancelled before payment was captured: nothing to refund",
                non_retryable=True,
            )
        return self._ledger.record_refund(
            order_id=order_id,
            amount_cents=cents(amount),
            reason=reason,
            idempotency_key=idempotency_key,
            total_cents=cents(order.total),
        )

    def create_ticket(
        self,
        subject: Annotated[str, Field(min_length=3, max_length=200)],
        body: Annotated[str, Field(min_length=1, max_length=10_000)],
        priority: Priority = "normal",
        customer_email: Email | None = None,
        order_id: OrderId | None = None,
        idempotency_key: str | None = None,
    ) -> Ticket:
        """Open a ticket for the support team (a follow-up a person must handle).

        Args:
            subject: One-line summary.
            body: What happened and what the customer needs.
            priority: How soon the team should look at it.
            customer_email: The customer's email, if known.
            order_id: The order concerned, if any.
        """
        return self._ledger.record_ticket(
            subject=subject,
            body=body,
            priority=priority,
            customer_email=customer_email,
            order_id=order_id,
            idempotency_key=idempotency_key,
        )


class _Policy(TypedDict, total=False):
    idempotent: bool
    requires_approval: bool
    timeout_s: float


_POLICIES: dict[str, _Policy] = {
    "lookup_order": {"timeout_s": 10},
    "track_shipment": {"timeout_s": 10},
    "customer_orders": {"timeout_s": 10},
    "issue_refund": {"idempotent": False, "requires_approval": True, "timeout_s": 15},
    "create_ticket": {"idempotent": False, "timeout_s": 10},
}
"""Each tool's policy, by the name of the `OrderDesk` method it runs."""

BUILTIN_TOOL_NAMES = tuple(_POLICIES)
"""The names `register_builtin_tools` registers, known without building a desk."""


def register_builtin_tools(registry: ToolRegistry, desk: OrderDesk) -> OrderDesk:
    """Register the order desk's tools on `registry`; returns the desk."""
    for name, policy in _POLICIES.items():
        registry.add_function(getattr(desk, name), **policy)
    return desk
