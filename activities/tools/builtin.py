"""Builtin sample tools: the order desk of Larkspur Outfitters, the fictional
outdoor-gear store of the flagship support chain and its help center.

A dozen orders ship in code, so demos and tests see the same data every
time. Orders never change; what the tools do (refunds, tickets) goes to a
small ledger in SQLite: in memory by default, or a file when refunds must be
deduplicated across worker restarts too.

`issue_refund` is the example of a non-idempotent tool done right: it takes
an idempotency key and records it with the refund in one transaction, so a
retried call returns the first refund instead of paying twice.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, computed_field

from activities.tools.errors import ToolError
from activities.tools.registry import ToolRegistry

STORE_NAME = "Larkspur Outfitters"
CURRENCY = "USD"

OrderStatus = Literal[
    "received", "processing", "shipped", "out_for_delivery", "delivered", "delayed", "cancelled"
]
Priority = Literal["low", "normal", "high", "urgent"]


def _normalize_order_id(value: Any) -> Any:
    """Models write `nw-1001`, `#NW-1001` or ` NW-1001 `: all mean NW-1001."""
    if isinstance(value, str):
        return value.strip().lstrip("#").strip().upper()
    return value


def _normalize_email(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# The normalising validator comes last so that it wraps (runs before) the
# pattern check while the pattern stays visible in the JSON Schema.
OrderId = Annotated[
    str,
    Field(pattern=r"^NW-\d{4}$", description="Order number, e.g. NW-1001"),
    BeforeValidator(_normalize_order_id),
]
Email = Annotated[
    str,
    Field(
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        max_length=254,
        description="Email address used at checkout",
    ),
    BeforeValidator(_normalize_email),
]


# -- the catalogue of orders (deterministic, shipped in code) -------------------


class LineItem(BaseModel):
    sku: str
    name: str
    quantity: int
    unit_price: float


class TrackingEvent(BaseModel):
    on: date
    location: str
    description: str


class Order(BaseModel):
    order_id: str
    customer_name: str
    email: str
    status: OrderStatus
    placed_on: date
    items: list[LineItem]
    shipping_method: Literal["standard", "expedited", "overnight", "freight"]
    shipping_cost: float
    tax: float
    carrier: str | None = None
    tracking_number: str | None = None
    shipped_on: date | None = None
    estimated_delivery: date | None = None
    delivered_on: date | None = None
    events: list[TrackingEvent] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> float:
        subtotal = sum(item.quantity * item.unit_price for item in self.items)
        return round(subtotal + self.shipping_cost + self.tax, 2)


def _d(text: str) -> date:
    return date.fromisoformat(text)


def _ev(on: str, location: str, description: str) -> TrackingEvent:
    return TrackingEvent(on=_d(on), location=location, description=description)


def _item(sku: str, name: str, quantity: int, unit_price: float) -> LineItem:
    return LineItem(sku=sku, name=name, quantity=quantity, unit_price=unit_price)


RENO = "Reno, NV"

ORDERS: tuple[Order, ...] = (
    Order(
        order_id="NW-1001",
        customer_name="Maya Chen",
        email="maya.chen@example.com",
        status="delivered",
        placed_on=_d("2025-03-02"),
        items=[_item("TNT-2P-ALP", "Alpine 2-Person Tent", 1, 249.00)],
        shipping_method="standard",
        shipping_cost=0.0,
        tax=19.92,
        carrier="UPS",
        tracking_number="1Z999AA10123456784",
        shipped_on=_d("2025-03-03"),
        estimated_delivery=_d("2025-03-07"),
        delivered_on=_d("2025-03-06"),
        events=[
            _ev("2025-03-03", RENO, "Shipped from the Larkspur warehouse"),
            _ev("2025-03-05", "Sacramento, CA", "Arrived at carrier facility"),
            _ev("2025-03-06", "Portland, OR", "Delivered, left at front door"),
        ],
    ),
    Order(
        order_id="NW-1002",
        customer_name="Maya Chen",
        email="maya.chen@example.com",
        status="shipped",
        placed_on=_d("2025-03-10"),
        items=[
            _item("SOCK-MER-M", "Merino Hiking Socks (M)", 3, 18.00),
            _item("BTL-750-STL", "Insulated Bottle 750 ml", 1, 32.00),
        ],
        shipping_method="standard",
        shipping_cost=5.95,
        tax=6.88,
        carrier="USPS",
        tracking_number="9400111899223344556677",
        shipped_on=_d("2025-03-11"),
        estimated_delivery=_d("2025-03-17"),
        events=[
            _ev("2025-03-11", RENO, "Shipped from the Larkspur warehouse"),
            _ev("2025-03-13", "Salt Lake City, UT", "In transit to next facility"),
        ],
    ),
    Order(
        order_id="NW-1003",
        customer_name="Daniel Okafor",
        email="d.okafor@example.net",
        status="delayed",
        placed_on=_d("2025-03-04"),
        items=[_item("JKT-RAIN-L", "Stormline Rain Jacket (L)", 1, 189.00)],
        shipping_method="expedited",
        shipping_cost=12.95,
        tax=16.16,
        carrier="FedEx",
        tracking_number="771234567890",
        shipped_on=_d("2025-03-04"),
        estimated_delivery=_d("2025-03-07"),
        events=[
            _ev("2025-03-04", RENO, "Shipped from the Larkspur warehouse"),
            _ev("2025-03-05", "Denver, CO", "Arrived at FedEx hub"),
            _ev("2025-03-06", "Denver, CO", "Delay: weather at the hub, missed connection"),
        ],
    ),
    Order(
        order_id="NW-1004",
        customer_name="Sofia Rossi",
        email="sofia.rossi@example.org",
        status="processing",
        placed_on=_d("2025-03-14"),
        items=[
            _item("PCK-45L-GRN", "Ridgeback 45 L Backpack", 1, 159.00),
            _item("HDL-300", "Trail Headlamp 300 lm", 1, 39.00),
        ],
        shipping_method="standard",
        shipping_cost=0.0,
        tax=15.84,
    ),
    Order(
        order_id="NW-1005",
        customer_name="Liam Walsh",
        email="liam.walsh@example.com",
        status="delivered",
        placed_on=_d("2025-02-20"),
        items=[_item("KYK-SOLO-RD", "Solo Touring Kayak", 1, 899.00)],
        shipping_method="freight",
        shipping_cost=89.00,
        tax=71.92,
        carrier="Estes Freight",
        tracking_number="EST-448812",
        shipped_on=_d("2025-02-21"),
        estimated_delivery=_d("2025-03-05"),
        delivered_on=_d("2025-03-03"),
        events=[
            _ev("2025-02-21", RENO, "Picked up by freight carrier"),
            _ev("2025-03-03", "Boise, ID", "Delivered, signed by L. WALSH"),
        ],
    ),
    Order(
        order_id="NW-1006",
        customer_name="Aisha Rahman",
        email="aisha.rahman@example.com",
        status="out_for_delivery",
        placed_on=_d("2025-03-12"),
        items=[_item("STV-CMP-1", "Compact Camp Stove", 1, 64.00)],
        shipping_method="overnight",
        shipping_cost=24.95,
        tax=5.12,
        carrier="UPS",
        tracking_number="1Z999AA10987654321",
        shipped_on=_d("2025-03-12"),
        estimated_delivery=_d("2025-03-13"),
        events=[
            _ev("2025-03-12", RENO, "Shipped from the Larkspur warehouse"),
            _ev("2025-03-13", "Oakland, CA", "Out for delivery"),
        ],
    ),
    Order(
        order_id="NW-1007",
        customer_name="Daniel Okafor",
        email="d.okafor@example.net",
        status="delivered",
        placed_on=_d("2025-01-28"),
        items=[
            _item("BAG-DWN-20", "Down Sleeping Bag 20°F", 1, 279.00),
            _item("PAD-INS-R", "Insulated Sleeping Pad", 1, 129.00),
        ],
        shipping_method="standard",
        shipping_cost=0.0,
        tax=32.64,
        carrier="UPS",
        tracking_number="1Z999AA10555666777",
        shipped_on=_d("2025-01-29"),
        estimated_delivery=_d("2025-02-04"),
        delivered_on=_d("2025-02-03"),
        events=[
            _ev("2025-01-29", RENO, "Shipped from the Larkspur warehouse"),
            _ev("2025-02-03", "Seattle, WA", "Delivered, handed to resident"),
        ],
    ),
    Order(
        order_id="NW-1008",
        customer_name="Emma Lindqvist",
        email="emma.l@example.com",
        status="received",
        placed_on=_d("2025-03-15"),
        items=[_item("GLV-TRK-S", "Trekking Gloves (S)", 2, 29.00)],
        shipping_method="standard",
        shipping_cost=5.95,
        tax=4.64,
    ),
    Order(
        order_id="NW-1009",
        customer_name="Carlos Mendez",
        email="carlos.mendez@example.com",
        status="cancelled",
        placed_on=_d("2025-03-01"),
        items=[_item("BIKE-GRV-54", "Gravel Bike 54 cm", 1, 1499.00)],
        shipping_method="freight",
        shipping_cost=129.00,
        tax=119.92,
    ),
    Order(
        order_id="NW-1010",
        customer_name="Sofia Rossi",
        email="sofia.rossi@example.org",
        status="delivered",
        placed_on=_d("2025-02-10"),
        items=[
            _item("PLS-TRK-PR", "Carbon Trekking Poles (pair)", 1, 119.00),
            _item("MAP-SIERRA", "Sierra Trail Map Set", 1, 24.00),
        ],
        shipping_method="expedited",
        shipping_cost=12.95,
        tax=11.44,
        carrier="FedEx",
        tracking_number="771098765432",
        shipped_on=_d("2025-02-10"),
        estimated_delivery=_d("2025-02-13"),
        delivered_on=_d("2025-02-12"),
        events=[
            _ev("2025-02-10", RENO, "Shipped from the Larkspur warehouse"),
            _ev("2025-02-12", "San Diego, CA", "Delivered, left at mailroom"),
        ],
    ),
    Order(
        order_id="NW-1011",
        customer_name="Noah Kim",
        email="noah.kim@example.com",
        status="shipped",
        placed_on=_d("2025-03-09"),
        items=[_item("TNT-4P-BASE", "Basecamp 4-Person Tent", 1, 429.00)],
        shipping_method="standard",
        shipping_cost=0.0,
        tax=34.32,
        carrier="UPS",
        tracking_number="1Z999AA10111222333",
        shipped_on=_d("2025-03-10"),
        estimated_delivery=_d("2025-03-14"),
        events=[
            _ev("2025-03-10", RENO, "Shipped from the Larkspur warehouse"),
        ],
    ),
    Order(
        order_id="NW-1012",
        customer_name="Grace Adeyemi",
        email="grace.adeyemi@example.com",
        status="delivered",
        placed_on=_d("2025-03-05"),
        items=[_item("JKT-FLC-M", "Fleece Jacket (M)", 1, 89.00)],
        shipping_method="standard",
        shipping_cost=5.95,
        tax=7.12,
        carrier="USPS",
        tracking_number="9400111899221122334455",
        shipped_on=_d("2025-03-06"),
        estimated_delivery=_d("2025-03-12"),
        delivered_on=_d("2025-03-10"),
        events=[
            _ev("2025-03-06", RENO, "Shipped from the Larkspur warehouse"),
            _ev("2025-03-10", "Austin, TX", "Delivered, in mailbox"),
        ],
    ),
)


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


class Refund(BaseModel):
    refund_id: str
    order_id: str
    amount: float
    currency: str = CURRENCY
    reason: str
    status: Literal["issued"] = "issued"
    duplicate: bool = False
    """True when this call repeated an earlier one (same idempotency key)
    and returned its refund instead of issuing another."""


class Ticket(BaseModel):
    ticket_id: str
    subject: str
    body: str
    priority: Priority
    customer_email: str | None = None
    order_id: str | None = None
    status: Literal["open"] = "open"
    duplicate: bool = False


def _cents(amount: float) -> int:
    return round(amount * 100)


def _dollars(cents: int) -> float:
    return round(cents / 100, 2)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS refunds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    reason TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS tickets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    priority TEXT NOT NULL,
    customer_email TEXT,
    order_id TEXT,
    idempotency_key TEXT UNIQUE
);
"""

TICKET_NUMBER_BASE = 5000


class OrderDesk:
    """The store's orders (read-only, in code) and its ledger of refunds and
    tickets (SQLite). Safe to share between the worker threads that run sync
    tools: every ledger change is one transaction under a lock."""

    def __init__(self, path: str | Path = ":memory:", orders: tuple[Order, ...] = ORDERS) -> None:
        self._orders = {order.order_id: order for order in orders}
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- observable state (tests, demos) ------------------------------------

    @property
    def orders(self) -> list[Order]:
        return list(self._orders.values())

    @property
    def refunds(self) -> list[Refund]:
        """Every refund issued, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, order_id, amount_cents, reason FROM refunds ORDER BY seq"
            ).fetchall()
        return [self._refund(*row) for row in rows]

    @property
    def tickets(self) -> list[Ticket]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, subject, body, priority, customer_email, order_id "
                "FROM tickets ORDER BY seq"
            ).fetchall()
        return [self._ticket(*row) for row in rows]

    def refunded(self, order_id: str) -> float:
        with self._lock:
            return _dollars(self._refunded_cents(order_id))

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
        cents = _cents(amount)
        with self._transaction() as db:
            earlier = db.execute(
                "SELECT seq, order_id, amount_cents, reason FROM refunds WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
            if earlier is not None:
                if (earlier[1], earlier[2], earlier[3]) != (order_id, cents, reason):
                    raise ToolError(
                        "idempotency key already used for a different refund "
                        f"({self._refund(*earlier).refund_id})",
                        non_retryable=True,
                    )
                return self._refund(*earlier).model_copy(update={"duplicate": True})
            refunded = self._refunded_cents(order_id)
            total = _cents(order.total)
            if refunded + cents > total:
                raise ToolError(
                    f"refund of ${_dollars(cents):.2f} exceeds what order {order_id} can still "
                    f"refund: total ${_dollars(total):.2f}, already refunded "
                    f"${_dollars(refunded):.2f}",
                    non_retryable=True,
                )
            cursor = db.execute(
                "INSERT INTO refunds (order_id, amount_cents, reason, idempotency_key) "
                "VALUES (?, ?, ?, ?)",
                (order_id, cents, reason, idempotency_key),
            )
            seq = cursor.lastrowid
        assert seq is not None
        return self._refund(seq, order_id, cents, reason)

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
        with self._transaction() as db:
            if idempotency_key:
                earlier = db.execute(
                    "SELECT seq, subject, body, priority, customer_email, order_id "
                    "FROM tickets WHERE idempotency_key = ?",
                    (idempotency_key,),
                ).fetchone()
                if earlier is not None:
                    return self._ticket(*earlier).model_copy(update={"duplicate": True})
            cursor = db.execute(
                "INSERT INTO tickets "
                "(subject, body, priority, customer_email, order_id, idempotency_key) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (subject, body, priority, customer_email, order_id, idempotency_key or None),
            )
            seq = cursor.lastrowid
        assert seq is not None
        return self._ticket(seq, subject, body, priority, customer_email, order_id)

    # -- helpers ----------------------------------------------------------------

    def _refunded_cents(self, order_id: str) -> int:
        row = self._db.execute(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM refunds WHERE order_id = ?", (order_id,)
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _refund(seq: int, order_id: str, cents: int, reason: str) -> Refund:
        return Refund(
            refund_id=f"RF-{seq:05d}", order_id=order_id, amount=_dollars(cents), reason=reason
        )

    @staticmethod
    def _ticket(
        seq: int,
        subject: str,
        body: str,
        priority: Priority,
        customer_email: str | None,
        order_id: str | None,
    ) -> Ticket:
        return Ticket(
            ticket_id=f"T-{TICKET_NUMBER_BASE + seq}",
            subject=subject,
            body=body,
            priority=priority,
            customer_email=customer_email,
            order_id=order_id,
        )


BUILTIN_TOOL_NAMES = (
    "lookup_order",
    "track_shipment",
    "customer_orders",
    "issue_refund",
    "create_ticket",
)


def register_builtin_tools(registry: ToolRegistry, desk: OrderDesk) -> OrderDesk:
    """Register the order desk's tools on `registry`; returns the desk."""
    registry.add_function(desk.lookup_order, timeout_s=10)
    registry.add_function(desk.track_shipment, timeout_s=10)
    registry.add_function(desk.customer_orders, timeout_s=10)
    registry.add_function(desk.issue_refund, idempotent=False, requires_approval=True, timeout_s=15)
    registry.add_function(desk.create_ticket, idempotent=False, timeout_s=10)
    return desk
