"""The sample order desk's orders: the models of chains/sample_data/order_desk.yaml
and its loader.

The orders are demo data, so they live in a data file beside the sample
knowledge rather than in code; what the builtin tools do with them is in
`activities.tools.builtin`. The file is validated completely when a desk is
built (at worker start), so a bad order stops the worker with a message
naming the file and the field instead of surfacing in a run.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    model_validator,
)

from activities.tools.errors import ToolDefinitionError
from activities.tools.python_tools import format_validation_error
from core.settings import project_path

ORDER_DATA_FILE = Path("chains") / "sample_data" / "order_desk.yaml"
"""The sample orders, relative to the project (or the image's WORKDIR)."""


def default_order_data_file() -> Path:
    """The shipped orders file: in the source checkout (or editable install);
    else relative to the working directory, where a regular install finds it
    (the Docker image copies chains/ to its WORKDIR, /app), as the settings'
    defaults such as chains/models.yaml are."""
    return project_path(ORDER_DATA_FILE.as_posix())


OrderStatus = Literal[
    "received", "processing", "shipped", "out_for_delivery", "delivered", "delayed", "cancelled"
]


def _normalize_order_id(value: Any) -> Any:
    """Models write `nw-1001`, `#NW-1001` or ` NW-1001 `: all mean NW-1001."""
    if isinstance(value, str):
        return value.strip().lstrip("#").strip().upper()
    return value


def _normalize_email(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# Tool arguments and the data file share these types, so every order in the
# file can be reached by the ids and emails the tools accept. The normalising
# validator comes last so that it wraps (runs before) the pattern check while
# the pattern stays visible in the JSON Schema.
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


class _Record(BaseModel):
    # A misspelt key in the data file is an error, not a silently missing field.
    model_config = ConfigDict(extra="forbid")


class LineItem(_Record):
    sku: str
    name: str
    quantity: int = Field(gt=0)
    unit_price: float = Field(ge=0)


class TrackingEvent(_Record):
    on: date
    location: str
    description: str


class Order(_Record):
    order_id: OrderId
    customer_name: str
    email: Email
    status: OrderStatus
    placed_on: date
    items: list[LineItem] = Field(min_length=1)
    shipping_method: Literal["standard", "expedited", "overnight", "freight"]
    shipping_cost: float = Field(ge=0)
    tax: float = Field(ge=0)
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


class OrderData(_Record):
    """The whole file: the store's name and its orders, each number once."""

    store: str
    orders: list[Order] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_order_ids(self) -> OrderData:
        counts = Counter(order.order_id for order in self.orders)
        repeated = sorted(order_id for order_id, n in counts.items() if n > 1)
        if repeated:
            raise ValueError(f"order numbers listed more than once: {', '.join(repeated)}")
        return self


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _OrdersLoader(_BaseLoader):
    """A safe loader (libyaml's when PyYAML has it: ten times faster, and
    every desk reads the file afresh) that leaves dates as text: pydantic
    parses them, so a bad date is reported with its place in the file
    rather than as a bare ValueError from PyYAML."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }


class OrderDataError(ToolDefinitionError):
    """The orders file is missing, not YAML or invalid: the order desk's
    tools cannot be registered. The message names the file and each problem."""


def load_orders(path: str | Path | None = None) -> tuple[Order, ...]:
    """The orders of `path` (the shipped file by default), validated."""
    path = Path(path) if path is not None else default_order_data_file()
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_OrdersLoader)
    except OSError as exc:
        raise OrderDataError(f"cannot read the order desk data file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise OrderDataError(f"order desk data file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise OrderDataError(
            f"invalid order desk data file {path}: expected a mapping at top level"
        )
    try:
        return tuple(OrderData.model_validate(data).orders)
    except ValidationError as exc:
        problems = format_validation_error(exc, whole="top level")
        raise OrderDataError(
            f"invalid order desk data file {path}:\n  " + "\n  ".join(problems)
        ) from None
