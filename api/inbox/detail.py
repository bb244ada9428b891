"""One approval with everything a reviewer needs to decide it: the ticket,
the text (rendered safely, citations linked to the passages), the path the
run took (steps, models, tokens, cost), guard violations, an agent's tool
call, and the run's earlier decisions.

Live state comes from the run client (the approval from the workflow's
`pending_approvals` query, the run from `RunClient.read`); decided approvals
and the audit trail come from the application database, which outlives the
run. Who may look is the API's rule (`api.ownership`): a reviewer sees an
approval its roles may decide, or a run it has decided on; an admin or a key
of scope `all` sees every run, read-only where it lacks the role.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from api.inbox.auth import InboxUser
from api.inbox.records import has_decided_on, lineage, root_of, run_audit
from api.inbox.rendering import citations_in, cited_unknown, markdown
from api.inbox.run_input import run_input
from api.state import Database
from core.logging import get_logger
from core.problems import ApiProblem
from runs.client import RunClient
from runs.views import RunDetail
from store.models import ApprovalAudit
from workflows.types import ApprovalState, StepRecord

log = get_logger(__name__)


class NotVisible(Exception):
    """The approval does not exist for this reviewer (absent, or not theirs)."""


@dataclass(frozen=True)
class StepRow:
    record: StepRecord

    @property
    def tokens(self) -> str:
        usage = self.record.usage
        total = usage.input_tokens + usage.output_tokens
        return f"{usage.input_tokens:,} in / {usage.output_tokens:,} out" if total else "—"

    @property
    def model(self) -> str:
        models = [c.model or c.alias for c in self.record.calls if c.outcome == "ok"]
        alias = self.record.model
        if alias and models:
            return f"{alias} ({models[-1]})" if models[-1] != alias else alias
        return alias or (models[-1] if models else "—")


@dataclass(frozen=True)
class PassageRow:
    number: int
    id: str
    document: str
    title: str | None
    text: str
    score: float | None
    step: str

    @property
    def anchor(self) -> str:
        return f"passage-{self.number}"


@dataclass
class Detail:
    run_id: str
    approval_id: str
    approval: ApprovalState | None
    """The live approval while it is pending; None once decided."""
    decisions: list[ApprovalAudit]
    """Decisions on this approval (audit log)."""
    audit: list[ApprovalAudit]
    """Every decision on the run and its agents."""
    run: RunDetail | None
    run_input: Any
    steps: list[StepRow]
    passages: list[PassageRow]
    text: str
    text_html: Markup
    unknown_citations: list[str]
    can_decide: bool
    why_not: str | None
    context: dict[str, str] = field(default_factory=dict)

    @property
    def root_run_id(self) -> str:
        return root_of(self.run_id)

    @property
    def is_tool(self) -> bool:
        return "tool" in self.context

    @property
    def tool_arguments(self) -> str:
        """The tool call's arguments, pretty-printed when they are JSON."""
        try:
            return json.dumps(json.loads(self.text), indent=2, sort_keys=True)
        except ValueError:
            return self.text

    @property
    def ticket(self) -> str | None:
        for name in ("ticket", "message", "question"):
            if self.context.get(name):
                return self.context[name]
        if isinstance(self.run_input, Mapping):
            for name in ("message", "ticket", "question"):
                value = self.run_input.get(name)
                if isinstance(value, str):
                    return value
        return None

    @property
    def cited_ids(self) -> set[str]:
        """Ids of the retrieved passages the text cites."""
        known = {p.id for p in self.passages}
        return {cid for cid in citations_in(self.text) if cid in known}

    @property
    def violations(self) -> list[str]:
        raw = self.context.get("violations", "")
        return [line.strip("-• ").strip() for line in raw.splitlines() if line.strip()]

    @property
    def extra_context(self) -> dict[str, str]:
        """Context fields not shown in a section of their own."""
        shown = {"ticket", "message", "question", "violations", "tool", "description"}
        return {k: v for k, v in self.context.items() if k not in shown}

    @property
    def input_json(self) -> str | None:
        if self.run_input is None:
            return None
        return json.dumps(self.run_input, indent=2, ensure_ascii=False, default=str)

    @property
    def status(self) -> str:
        if self.approval is not None:
            return self.approval.status
        if not self.decisions:
            return "closed"
        last = self.decisions[-1].decision
        return "rejected" if last in ("reject", "timeout_reject") else "approved"

    @property
    def requested_at(self) -> datetime | None:
        return self.approval.requested_at if self.approval else None


async def _pending(runs: RunClient, run_id: str) -> list[ApprovalState] | None:
    try:
        return await runs.pending_approvals(run_id)
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        log.info("approvals of a run could not be queried", run_id=run_id, error=str(exc))
        return None


async def _read_run(runs: RunClient, run_id: str) -> RunDetail | None:
    try:
        return await runs.read(run_id)
    except ApiProblem as exc:
        log.info("run could not be read for the inbox", run_id=run_id, error=exc.message)
        return None


def _steps(run: RunDetail | None) -> list[StepRow]:
    if run is None:
        return []
    records = sorted(
        run.steps.values(),
        key=lambda r: (r.started_at is None, r.started_at or datetime.min, r.name),
    )
    return [StepRow(r) for r in records]


def _passages(steps: list[StepRow]) -> list[PassageRow]:
    rows: list[PassageRow] = []
    seen: set[str] = set()
    for step in steps:
        output = step.record.output
        if step.record.kind != "retrieve" or not isinstance(output, Mapping):
            continue
        for passage in output.get("passages") or []:
            if not isinstance(passage, Mapping) or not isinstance(passage.get("id"), str):
                continue
            if passage["id"] in seen:
                continue
            seen.add(passage["id"])
            rows.append(
                PassageRow(
                    number=len(rows) + 1,
                    id=passage["id"],
                    document=str(passage.get("document") or passage["id"].split("#")[0]),
                    title=passage.get("title"),
                    text=str(passage.get("text", "")),
                    score=passage.get("score"),
                    step=step.record.name,
                )
            )
    return rows


async def load_detail(
    db: Database,
    runs: RunClient,
    user: InboxUser,
    run_id: str,
    approval_id: str,
    *,
    seen_before: bool = False,
) -> Detail:
    """The approval as the reviewer may see it; NotVisible when it may not.

    `seen_before`: the reviewer had the approval on screen a moment ago (a
    decision that lost a race), so a decided approval is shown to them even
    when they took no part in it."""
    principal = user.principal
    root = root_of(run_id)
    ids = list(dict.fromkeys([run_id, *lineage(run_id)]))
    pending, run, audit, value = await asyncio.gather(
        _pending(runs, run_id),
        _read_run(runs, root),
        db.read(run_audit, run_ids=ids),
        run_input(runs.client, root),
    )
    approval = next((a for a in pending or [] if a.approval_id == approval_id), None)
    decisions = [a for a in audit if a.run_id == run_id and a.approval_id == approval_id]
    roles = principal.reviewer_roles
    sees_all = principal.run_access == "all"
    decided_here = any(a.reviewer == principal.name for a in audit) or await db.read(
        has_decided_on, reviewer=principal.name, run_ids=ids
    )
    if approval is not None:
        has_role = approval.required_role in roles
        if not (has_role or sees_all or decided_here):
            raise NotVisible
        can_decide = has_role and principal.name not in approval.approvals
        if not has_role:
            why_not = f"Deciding this needs role {approval.required_role!r}, which your key lacks."
        elif not can_decide:
            remaining = approval.required_approvals - len(approval.approvals)
            why_not = (
                f"You approved this already; it waits for {remaining} more "
                f"reviewer{'s' if remaining != 1 else ''}."
            )
        else:
            why_not = None
        text, context = approval.text, dict(approval.context)
    else:
        if not decisions or not (sees_all or decided_here or seen_before):
            raise NotVisible
        last = decisions[-1]
        text = last.after_text if last.after_text is not None else last.before_text
        context = {}
        can_decide, why_not = False, None
    if not context and run is not None:
        context = next(
            (dict(a.context) for a in run.pending_approvals if a.approval_id == approval_id), {}
        )
    steps = _steps(run)
    passages = _passages(steps)
    citations = {p.id: p.number for p in passages}
    is_tool = "tool" in context
    return Detail(
        run_id=run_id,
        approval_id=approval_id,
        approval=approval,
        decisions=decisions,
        audit=audit,
        run=run,
        run_input=value,
        steps=steps,
        passages=passages,
        text=text,
        text_html=Markup("") if is_tool else markdown(text, citations=citations),
        unknown_citations=[] if is_tool or not passages else cited_unknown(text, citations),
        can_decide=can_decide,
        why_not=why_not,
        context=context,
    )
