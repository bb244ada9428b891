"""The sample order desk: deterministic data (the shipped orders file), and a
refund that is never paid twice for one idempotency key, however often the
call is repeated."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from activities.tools.activities import ToolActivities
from activities.tools.builtin import BUILTIN_TOOL_NAMES, OrderDesk
from activities.tools.errors import ToolError
from activities.tools.order_data import load_orders
from activities.tools.types import ToolErrorType
from tests.tools.conftest import ToolEnv


def test_a_dozen_orders_ship_in_the_data_file() -> None:
    orders = load_orders()
    ids = [o.order_id for o in orders]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert ids[0] == "NW-1001" and ids[-1] == "NW-1012"
    first = OrderDesk().lookup_order("NW-1001")
    assert first.order is not None and first.order.total == 268.92  # 249.00 + 19.92 tax
    # Shipped orders carry tracking; orders not yet shipped do not.
    for order in orders:
        shipped = order.status in {"shipped", "out_for_delivery", "delivered", "delayed"}
        assert (order.tracking_number is not None) is shipped, order.order_id


def test_builtin_tools_and_their_policies(builtin: ToolActivities) -> None:
    registry = builtin.registry
    assert registry.names == sorted(BUILTIN_TOOL_NAMES)
    policies = {
        n: (registry.describe(n).idempotent, registry.describe(n).requires_approval)
        for n in registry.names
    }
    assert policies == {
        "lookup_order": (True, False),
        "track_shipment": (True, False),
        "customer_orders": (True, False),
        "issue_refund": (False, True),
        "create_ticket": (False, False),
    }
    refund = registry.describe("issue_refund").parameters
    assert refund["required"] == ["order_id", "amount", "reason"]
    assert refund["properties"]["order_id"]["pattern"] == r"^NW-\d{4}$"


async def test_lookup_normalises_ids_and_reports_unknown_orders(
    builtin: ToolActivities, env: ToolEnv
) -> None:
    found = await env.run(builtin, "lookup_order", order_id=" #nw-1003 ")
    assert found.output["found"] is True
    order = found.output["order"]
    assert order["order_id"] == "NW-1003" and order["status"] == "delayed"
    assert order["placed_on"] == "2025-03-04"  # JSON, not a date object
    assert found.output["refundable"] == order["total"] == 218.11

    missing = await env.run(builtin, "lookup_order", order_id="NW-9999")
    assert missing.output == {
        "found": False,
        "order_id": "NW-9999",
        "order": None,
        "refunded": 0.0,
        "refundable": 0.0,
        "message": "no order NW-9999",
    }
    bad = await env.fail(builtin, "lookup_order", order_id="order 12")
    assert bad.type == ToolErrorType.INVALID_ARGUMENTS


async def test_tracking_and_customer_orders(builtin: ToolActivities, env: ToolEnv) -> None:
    delayed = (await env.run(builtin, "track_shipment", order_id="NW-1003")).output
    assert delayed["carrier"] == "FedEx" and delayed["tracking_number"] == "771234567890"
    assert delayed["events"][-1]["description"].startswith("Delay: weather")
    waiting = (await env.run(builtin, "track_shipment", order_id="NW-1004")).output
    assert waiting["carrier"] is None
    assert waiting["message"] == "order NW-1004 has not shipped yet (processing)"

    orders = (await env.run(builtin, "customer_orders", email=" D.Okafor@Example.NET")).output
    assert [o["order_id"] for o in orders["orders"]] == ["NW-1003", "NW-1007"]  # newest first
    assert orders["orders"][1]["items"] == [
        "1 x Down Sleeping Bag 20°F",
        "1 x Insulated Sleeping Pad",
    ]
    assert (await env.run(builtin, "customer_orders", email="nobody@example.com")).output[
        "orders"
    ] == []


async def test_a_repeated_refund_returns_the_first_one(
    builtin: ToolActivities, desk: OrderDesk
) -> None:
    env = ToolEnv()
    args = {"order_id": "NW-1001", "amount": 49.99, "reason": "late delivery"}
    first = await env.run(builtin, "issue_refund", "ticket-1-refund", **args)
    again = await env.run(builtin, "issue_refund", "ticket-1-refund", **args)
    assert first.output["refund_id"] == again.output["refund_id"] == "RF-00001"
    assert first.output["duplicate"] is False and again.output["duplicate"] is True
    assert [(r.order_id, r.amount) for r in desk.refunds] == [("NW-1001", 49.99)]
    assert desk.refunded("NW-1001") == 49.99

    # Without a key from the workflow, the activity's own key deduplicates retries.
    second = await env.run(builtin, "issue_refund", **args)
    retried = await env.run(builtin, "issue_refund", **args)  # the same activity again
    assert second.output["refund_id"] == retried.output["refund_id"] == "RF-00002"
    assert len(desk.refunds) == 2

    looked_up = (await env.run(builtin, "lookup_order", order_id="NW-1001")).output
    assert looked_up["refunded"] == 99.98
    assert looked_up["refundable"] == round(268.92 - 99.98, 2)


async def test_refunds_are_refused_when_they_cannot_succeed(
    builtin: ToolActivities, desk: OrderDesk, env: ToolEnv
) -> None:
    over = await env.fail(
        builtin, "issue_refund", "k1", order_id="NW-1012", amount=102.08, reason="x" * 3
    )
    assert over.type == ToolErrorType.FAILED and over.non_retryable
    assert "exceeds what order NW-1012 can still refund: total $102.07" in over.message

    await env.run(builtin, "issue_refund", "k2", order_id="NW-1012", amount=100, reason="damaged")
    rest = await env.fail(
        builtin, "issue_refund", "k3", order_id="NW-1012", amount=2.08, reason="more"
    )
    assert rest.non_retryable and "already refunded $100.00" in rest.message
    ok = await env.run(
        builtin, "issue_refund", "k4", order_id="NW-1012", amount=2.07, reason="rest"
    )
    assert ok.output["amount"] == 2.07

    reused = await env.fail(
        builtin, "issue_refund", "k2", order_id="NW-1012", amount=1, reason="damaged"
    )
    assert (
        reused.non_retryable and "already used for a different refund (RF-00001)" in reused.message
    )
    unknown = await env.fail(
        builtin, "issue_refund", "k5", order_id="NW-9999", amount=1, reason="why"
    )
    assert unknown.non_retryable and "no order NW-9999" in unknown.message
    cancelled = await env.fail(
        builtin, "issue_refund", "k6", order_id="NW-1009", amount=1, reason="why"
    )
    assert cancelled.non_retryable and "cancelled" in cancelled.message
    assert [r.refund_id for r in desk.refunds] == ["RF-00001", "RF-00002"]


def test_concurrent_calls_with_one_key_refund_once(desk: OrderDesk) -> None:
    def refund(_: int) -> str:
        return desk.issue_refund("NW-1005", 100.0, "scratched hull", "same-key").refund_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(refund, range(32)))
    assert ids == {"RF-00001"}
    assert len(desk.refunds) == 1


def test_a_refund_needs_a_key(desk: OrderDesk) -> None:
    with pytest.raises(ToolError, match="needs an idempotency key") as caught:
        desk.issue_refund("NW-1001", 1.0, "why", None)
    assert caught.value.non_retryable


def test_the_ledger_survives_a_reopen_when_kept_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    first = OrderDesk(path)
    first.issue_refund("NW-1007", 50.0, "pad leaks", "key-a")
    first.close()
    reopened = OrderDesk(path)
    again = reopened.issue_refund("NW-1007", 50.0, "pad leaks", "key-a")
    assert again.duplicate and again.refund_id == "RF-00001"
    assert len(reopened.refunds) == 1
    reopened.close()


async def test_tickets_are_numbered_and_deduplicated_by_key(
    builtin: ToolActivities, desk: OrderDesk
) -> None:
    env = ToolEnv()
    made = await env.run(
        builtin,
        "create_ticket",
        "ticket-7",
        subject="Tent pole snapped",
        body="Customer reports a snapped pole on first use.",
        priority="high",
        order_id="nw-1001",
    )
    assert made.output["ticket_id"] == "T-5001" and made.output["order_id"] == "NW-1001"
    repeat = await env.run(
        builtin, "create_ticket", "ticket-7", subject="Tent pole snapped", body="again"
    )
    assert repeat.output["ticket_id"] == "T-5001" and repeat.output["duplicate"] is True
    other = await ToolEnv().run(builtin, "create_ticket", subject="Other", body="b")
    assert other.output["ticket_id"] == "T-5002" and other.output["priority"] == "normal"
    assert [t.ticket_id for t in desk.tickets] == ["T-5001", "T-5002"]
    bad = await env.fail(builtin, "create_ticket", subject="Hi", body="", priority="asap")
    assert bad.details[0]["problems"] == [
        "subject: String should have at least 3 characters",
        "body: String should have at least 1 character",
        "priority: Input should be 'low', 'normal', 'high' or 'urgent'",
    ]
