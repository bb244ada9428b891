"""The sample order desk's data file: found wherever Chorus runs (a checkout,
an editable install, the Docker image's WORKDIR) and refused, with the file
and the field named, when it is missing or wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

import core.settings
from activities.tools.builtin import OrderDesk
from activities.tools.errors import ToolDefinitionError
from activities.tools.order_data import (
    ORDER_DATA_FILE,
    OrderDataError,
    default_order_data_file,
    load_orders,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / ORDER_DATA_FILE


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orders.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_checkout_reads_the_file_beside_the_sources() -> None:
    assert default_order_data_file() == SHIPPED and SHIPPED.is_file()
    assert load_orders() == load_orders(SHIPPED)


def test_a_regular_install_reads_it_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Installed into site-packages, the sources have no chains/ beside them;
    # the image runs in WORKDIR /app, where the Dockerfile copies chains/.
    monkeypatch.setattr(core.settings, "project_root", lambda: None)
    monkeypatch.chdir(ROOT)
    assert (
        default_order_data_file() == ORDER_DATA_FILE == Path("chains/sample_data/order_desk.yaml")
    )
    assert [o.order_id for o in OrderDesk().orders] == [o.order_id for o in load_orders(SHIPPED)]

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OrderDataError, match=r"cannot read the order desk data file chains/"):
        OrderDesk()


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ToolDefinitionError, match=r"cannot read .*missing\.yaml"):
        load_orders(tmp_path / "missing.yaml")
    with pytest.raises(OrderDataError, match=r"orders\.yaml is not valid YAML"):
        load_orders(write(tmp_path, "orders: [unclosed"))
    for text in ("", "- just\n- a list\n"):
        with pytest.raises(OrderDataError, match="expected a mapping at top level"):
            load_orders(write(tmp_path, text))


def test_every_problem_is_named_with_its_place_in_the_file(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new in [
        ('{"on": 2025-03-03,', "{at: 2025-03-03,"),  # order 0, first event
        ('"9400111899223344556677"', "9400111899223344556677"),  # order 1
        ("placed_on: 2025-03-04", "placed_on: 2025-02-30"),  # order 2
        ("shipping_method: freight", "shipping_method: barge"),  # order 4
    ]:
        assert old in text, old
        text = text.replace(old, new, 1)
    with pytest.raises(OrderDataError) as caught:
        load_orders(write(tmp_path, text))
    assert str(caught.value).splitlines() == [
        f"invalid order desk data file {tmp_path / 'orders.yaml'}:",
        "  orders.0.events.0.on: Field required",
        "  orders.0.events.0.at: Extra inputs are not permitted",
        "  orders.1.tracking_number: Input should be a valid string",
        "  orders.2.placed_on: Input should be a valid date or datetime, "
        "day value is outside expected range",
        "  orders.4.shipping_method: "
        "Input should be 'standard', 'expedited', 'overnight' or 'freight'",
    ]


def test_order_numbers_are_unique_and_reachable_by_the_tools(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    with pytest.raises(OrderDataError, match="order numbers listed more than once: NW-1001"):
        load_orders(write(tmp_path, text.replace("order_id: NW-1012", "order_id: nw-1001")))
    with pytest.raises(OrderDataError, match=r"orders\.0\.order_id: String should match"):
        load_orders(write(tmp_path, text.replace("order_id: NW-1001", "order_id: NW-101")))

    # Written loosely, an order is stored as the tools' arguments normalise it.
    loose = text.replace("order_id: NW-1012", "order_id: '#nw-1012'").replace(
        "email: grace.adeyemi@example.com", "email: Grace.Adeyemi@Example.com"
    )
    desk = OrderDesk(orders=load_orders(write(tmp_path, loose)))
    assert desk.lookup_order("NW-1012").found
    assert [o.order_id for o in desk.customer_orders("grace.adeyemi@example.com").orders] == [
        "NW-1012"
    ]
    desk.close()


def test_a_desk_can_be_given_its_orders() -> None:
    [first, *_] = load_orders()
    desk = OrderDesk(orders=[first])
    assert [o.order_id for o in desk.orders] == ["NW-1001"]
    assert not desk.lookup_order("NW-1002").found
    desk.close()
