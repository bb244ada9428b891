"""The inbox list: the pending approvals a reviewer may decide, soonest
deadline first, with what a lead scans for (chain, age, deadline, quorum,
escalation, what the run has cost so far).

It lists through `api.approvals.list_pending`, the same call as
GET /v1/approvals (chain runs and their agents' child runs), and keeps only
the approvals whose `required_role` is one of the reviewer's roles: the
inbox shows work the reviewer can do, so an admin does not see approvals
meant for a role it lacks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from api import approvals
from api.inbox.auth import InboxUser
from api.inbox.costs import live_costs
from api.inbox.records import nearest_record, run_records
from api.state import Database
from runs.client import RunClient
from runs.views import ApprovalView

LIST_LIMIT = 200
"""Most runs awaiting approval looked at per listing."""

STATUS_FILTERS: dict[str, str] = {
    "all": "All pending",
    "mine": "Awaiting my decision",
    "quorum": "Quorum in progress",
    "escalated": "Escalated",
}

_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


def item_url(run_id: str, approval_id: str) -> str:
    return f"/inbox/runs/{quote(run_id, safe='')}/approvals/{quote(approval_id, safe='')}"


@dataclass(frozen=True)
class InboxItem:
    """One row of the list."""

    view: ApprovalView
    chain: str | None
    cost_usd: float | None
    decided_by_me: bool

    @property
    def key(self) -> str:
        return f"{self.view.run_id}/{self.view.approval_id}"

    @property
    def url(self) -> str:
        return item_url(self.view.run_id, self.view.approval_id)

    @property
    def tool(self) -> str | None:
        """The tool an agent asks to run (tool approvals only)."""
        return self.view.context.get("tool")

    @property
    def summary(self) -> str:
        """What the row is about, in one line: the ticket, else the text."""
        context = self.view.context
        if self.tool:
            return f"Run tool {self.tool}: " + " ".join(self.view.text.split())
        for name in ("ticket", "message", "question"):
            if context.get(name):
                return " ".join(context[name].split())
        return " ".join(self.view.text.split())

    @property
    def quorum(self) -> str:
        return f"{len(self.view.approvals)} of {self.view.required_approvals}"

    @property
    def signature(self) -> str:
        """Changes whenever something the row shows changes: the page's poll
        replaces a row only then, and leaves the others (and their place) be."""
        v = self.view
        part = (
            f"{self.key}:{v.payload_hash}:{','.join(v.approvals)}:{v.escalated}:"
            f"{v.required_role}:{v.deadline}:{self.cost_usd}:{self.decided_by_me}"
        )
        return hashlib.sha256(part.encode()).hexdigest()[:12]


@dataclass
class InboxList:
    items: list[InboxItem]
    chains: list[str] = field(default_factory=list)
    unavailable_runs: list[str] = field(default_factory=list)

    @property
    def signature(self) -> str:
        """Changes whenever something a row shows changes (the page's poll
        re-renders the list only then, so focus and scroll stay put)."""
        parts = [i.signature for i in self.items] + [str(len(self.unavailable_runs))]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _costed_run(view: ApprovalView) -> str:
    """The run whose cost a row shows: the chain run. An agent's child run
    has no index row of its own, and the reviewer weighs what the whole run
    has cost, not one step of it (its index row lags while its agent waits:
    see `api.inbox.costs`)."""
    return view.parent_run_id or view.run_id


def _matches(item: InboxItem, status: str) -> bool:
    if status == "mine":
        return not item.decided_by_me
    if status == "quorum":
        return item.view.required_approvals > 1 and bool(item.view.approvals)
    if status == "escalated":
        return item.view.escalated
    return True


async def load_inbox(
    db: Database, runs: RunClient, user: InboxUser, *, chain: str | None, status: str
) -> InboxList:
    """The reviewer's pending approvals, filtered and sorted by deadline."""
    principal = user.principal
    listing = await approvals.list_pending(
        db, runs, principal=principal, chain=None, limit=LIST_LIMIT
    )
    roles = principal.reviewer_roles
    views = [v for v in listing.items if v.required_role in roles]
    records = await db.read(run_records, run_ids={_costed_run(v) for v in views})
    live = await live_costs(runs, {v.parent_run_id for v in views if v.parent_run_id})
    items: list[InboxItem] = []
    for view in views:
        record = nearest_record(records, _costed_run(view))
        indexed = record.cost_usd if record else None
        costs = [c for c in (indexed, live.get(_costed_run(view))) if c is not None]
        items.append(
            InboxItem(
                view=view,
                chain=view.chain or (record.chain if record else None),
                cost_usd=max(costs) if costs else None,
                decided_by_me=principal.name in view.approvals,
            )
        )
    chains = sorted({i.chain for i in items if i.chain})
    shown = [i for i in items if (chain is None or i.chain == chain) and _matches(i, status)]
    shown.sort(key=lambda i: (i.view.deadline or _FAR_FUTURE, i.view.requested_at or _FAR_FUTURE))
    return InboxList(items=shown, chains=chains, unavailable_runs=listing.unavailable_runs)


def neighbour(listing: InboxList, run_id: str, approval_id: str, step: int) -> InboxItem | None:
    """The row `step` places from this approval's (1: next, -1: previous);
    from an approval no longer listed (decided meanwhile), the first row is
    next and nothing is previous."""
    keys = [i.key for i in listing.items]
    key = f"{run_id}/{approval_id}"
    if key not in keys:
        return listing.items[0] if step > 0 and listing.items else None
    at = keys.index(key) + step
    return listing.items[at] if 0 <= at < len(keys) else None
