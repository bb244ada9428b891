"""Who sees which run (the scope half of the role matrix).

A key's role says what it may do; `Principal.run_access` says to which runs:

- `all`: admins, and keys created with scope `all`, see every run and every
  approval (a service key of scope `all` also cancels any run).
- `owned`: a service key sees, lists and cancels the runs it started (the run
  index's `created_by`, the key's name) and their agent child runs; the
  approvals it lists are those of these runs.
- `reviewed`: a reviewer lists the approvals its roles may decide (its role
  and `approval_roles` against each approval's `required_role`). It reads a
  run while one of those approvals is pending (the steps that led to the text
  it is asked to approve are its context), and afterwards if it decided one of
  the run's approvals (the audit log); it lists the runs it decided on. The
  run's `pending_approvals` shows only the approvals of its roles. Other runs
  are another team's data: the reviewer has no part in them.

A run a key may not see answers 404, exactly as a run that does not exist,
so a key never learns another key's run ids.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import Session

from api.deps import Principal
from core.problems import RunNotFound
from runs.views import ApprovalList, RunDetail
from store import RunRecord, get_run, list_approval_audit
from store.crud import run_creators

CHILD_SEPARATOR = "--"
"""An agent step's child run is `{parent run id}--{step name}`
(workflows/steps/agent.py); it has no creator of its own in the run index."""


def run_not_found(run_id: str) -> RunNotFound:
    """The one answer for a run that does not exist and a run the caller may not see."""
    return RunNotFound(f"no run with id {run_id!r}", details={"run_id": run_id})


def _lineage(run_id: str) -> list[str]:
    """The run, then each run it may be a child of, nearest first."""
    ids = [run_id]
    rest = run_id
    while (cut := rest.rfind(CHILD_SEPARATOR)) > 0:
        rest = rest[:cut]
        ids.append(rest)
    return ids


def owned_runs(session: Session, *, owner: str, run_ids: Collection[str]) -> set[str]:
    """Of these runs, those `owner` started: its own creator decides, and a run
    without one (a child run a workflow started) belongs to the creator of its
    nearest parent that has one."""
    lineages = {run_id: _lineage(run_id) for run_id in run_ids}
    creators = run_creators(
        session, run_ids={run_id for lineage in lineages.values() for run_id in lineage}
    )
    owned: set[str] = set()
    for run_id, lineage in lineages.items():
        creator = next((creators[i] for i in lineage if creators.get(i) is not None), None)
        if creator == owner:
            owned.add(run_id)
    return owned


def visible_record(session: Session, *, principal: Principal, run_id: str) -> RunRecord | None:
    """The run's index row (None when the index has none), or RunNotFound when
    the caller may not see the run. A reviewer's answer also depends on the
    run's pending approvals (`reviewer_view`), known only once Temporal is read."""
    record = get_run(session, run_id=run_id)
    if principal.run_access != "owned":
        return record
    if record is not None and record.created_by is not None:
        mine = record.created_by == principal.name
    else:
        mine = run_id in owned_runs(session, owner=principal.name, run_ids=[run_id])
    if not mine:
        raise run_not_found(run_id)
    return record


def reviewer_view(principal: Principal, detail: RunDetail) -> RunDetail:
    """The run with only the pending approvals a reviewer of scope `own` may
    decide; unchanged for every other caller."""
    if principal.run_access != "reviewed":
        return detail
    roles = principal.reviewer_roles
    mine = [a for a in detail.pending_approvals if a.required_role in roles]
    return detail.model_copy(update={"pending_approvals": mine})


def has_reviewed(session: Session, *, reviewer: str, run_id: str) -> bool:
    """Whether the audit log has a decision by `reviewer` on the run."""
    return bool(list_approval_audit(session, run_id=run_id, reviewer=reviewer))


def runs_filter(principal: Principal) -> dict[str, str | None]:
    """`list_runs` filters for the caller's listing."""
    access = principal.run_access
    return {
        "created_by": principal.name if access == "owned" else None,
        "reviewed_by": principal.name if access == "reviewed" else None,
    }


def approval_roles_filter(principal: Principal) -> list[str] | None:
    """The roles whose approvals the caller lists; None for every approval."""
    return principal.reviewer_roles if principal.run_access == "reviewed" else None


def owned_approvals(
    session: Session, *, principal: Principal, listing: ApprovalList
) -> ApprovalList:
    """The listing cut to the runs a service key of scope `own` started (also
    the runs whose approvals could not be read: their ids are not shown to
    other keys either)."""
    if principal.run_access != "owned":
        return listing
    ids = {item.run_id for item in listing.items} | set(listing.unavailable_runs)
    mine = owned_runs(session, owner=principal.name, run_ids=ids) if ids else set()
    return ApprovalList(
        items=[item for item in listing.items if item.run_id in mine],
        unavailable_runs=[run_id for run_id in listing.unavailable_runs if run_id in mine],
    )
