"""Drives the ticket runs: starts them through the run client, stands in for
the reviewer when a run asks for approval (or, with an inbox, tells the person
who decides there what waits and what they decided), and collects each
result."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any, Literal

from rich.markup import escape

from cli.demo.summary import DecidedApproval, TicketRun
from cli.demo.tickets import SampleTicket

if TYPE_CHECKING:
    from rich.console import Console
    from temporalio.client import Client, WorkflowHandle

    from core.chain_spec import ChainSpec
    from core.settings import Settings
    from workflows.types import ApprovalState, ChainResult

DEMO_REVIEWER = "demo-reviewer"
APPROVAL_ENDPOINT = "POST /v1/runs/{run_id}/approvals/{approval_id}"
"""Where a person decides an approval; the demo names it when it decides instead."""

_POLL_INTERVAL_S = 0.2


class Driver:
    """Starts the ticket runs, stands in for the reviewer, collects results.

    With `inbox_url` (`chorus demo --interactive`) a person decides the
    approvals in the inbox: the driver names each one as it comes up, the
    progress as runs finish, and takes the decisions from the results."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        spec: ChainSpec,
        say: Console,
        *,
        inbox_url: str | None = None,
    ) -> None:
        from runs.client import RunClient

        self.runs = RunClient(client, task_queue=settings.task_queue)
        self.settings = settings
        self.spec = spec
        self.say = say
        self.inbox_url = inbox_url
        self.handles: list[WorkflowHandle[Any, ChainResult]] = []
        self.finished: set[str] = set()
        self.announced: set[tuple[str, str]] = set()

    async def run_all(self, tickets: tuple[SampleTicket, ...]) -> list[TicketRun]:

        async def start(ticket: SampleTicket) -> WorkflowHandle[Any, ChainResult]:
            started = await self.runs.start(
                self.spec,
                ticket.input,
                run_id=f"demo-{ticket.id}-{uuid.uuid4().hex[:8]}",
                summary=f"chorus demo: ticket {ticket.id}",
                checked=True,
            )
            handle = started.handle
            self.handles.append(handle)  # known at once, so an interruption can end it
            return handle

        handles = await asyncio.gather(*(start(t) for t in tickets))
        for ticket, handle in zip(tickets, handles, strict=True):
            self.say.print(
                f"  started run [bold]{escape(handle.id)}[/]  ({escape(ticket.id)})",
                highlight=False,
            )
        if self.inbox_url is not None:
            self.say.print(
                "waiting for the runs to finish: each approval is yours to decide in the inbox "
                "(Ctrl-C stops the demo and what it started)",
                highlight=False,
            )
        runs = [TicketRun(t, h.id) for t, h in zip(tickets, handles, strict=True)]
        async with asyncio.TaskGroup() as group:
            for run, handle in zip(runs, handles, strict=True):
                group.create_task(self._drive(run, handle))
        return runs

    async def _drive(self, run: TicketRun, handle: WorkflowHandle[Any, ChainResult]) -> None:
        """Wait for the run's result, deciding each approval it asks for."""
        from temporalio.client import WorkflowFailureError

        from runs.results import failure_message, partial_result

        result_task = asyncio.ensure_future(handle.result())
        try:
            while not result_task.done():
                await asyncio.wait({result_task}, timeout=_POLL_INTERVAL_S)
                if result_task.done():
                    break
                for approval in await self._pending(handle):
                    if self.inbox_url is not None:
                        self._announce(run, approval)
                    elif approval.approval_id not in {d.approval_id for d in run.decided}:
                        await self._decide(run, handle, approval)
            try:
                run.result = result_task.result()
            except WorkflowFailureError as exc:
                run.result = partial_result(exc)
                run.error = failure_message(exc)
            self.finished.add(handle.id)
            if self.inbox_url is not None:
                run.decided.extend(people_decisions(run))
                self._progress(run)
        finally:
            if not result_task.done():
                result_task.cancel()

    async def _pending(self, handle: WorkflowHandle[Any, ChainResult]) -> list[ApprovalState]:
        from temporalio.client import WorkflowQueryFailedError
        from temporalio.service import RPCError

        try:
            pending = await self.runs.pending_approvals(handle.id)
        except (RPCError, WorkflowQueryFailedError):
            return []  # not picked up by the worker yet, or finishing right now
        return [a for a in pending if a.status == "pending"]

    async def _decide(
        self, run: TicketRun, handle: WorkflowHandle[Any, ChainResult], approval: ApprovalState
    ) -> None:
        ticket = run.ticket
        edit = ticket.review == "edit" and ticket.edited_reply is not None
        kind: Literal["approve", "edit"] = "edit" if edit else "approve"
        endpoint = APPROVAL_ENDPOINT.format(run_id=handle.id, approval_id=approval.approval_id)
        self.say.print(
            f"  ⏸ {escape(ticket.id)} waits for approval [bold]{escape(approval.approval_id)}[/] "
            + escape(
                f"({approval.context.get('category', '?')}, confidence "
                f"{approval.context.get('confidence', '?')}): the demo "
                f"{'edits the reply and approves it' if edit else 'approves it'} as "
                f"{DEMO_REVIEWER}; a person would normally do this in the API: {endpoint}"
            ),
            highlight=False,
        )
        await self.runs.decide(
            handle.id,
            approval_id=approval.approval_id,
            decision=kind,
            reviewer=DEMO_REVIEWER,
            reviewer_roles=[approval.required_role],
            payload_hash=approval.payload_hash,
            comment="decided by `chorus demo`, standing in for a reviewer",
            edited_text=ticket.edited_reply if edit else None,
        )
        run.decided.append(
            DecidedApproval(
                ticket=ticket.id,
                run_id=handle.id,
                approval_id=approval.approval_id,
                decision=kind,
                reviewer=DEMO_REVIEWER,
            )
        )

    def _announce(self, run: TicketRun, approval: ApprovalState) -> None:
        """Name an approval waiting in the inbox, once."""
        key = (run.run_id, approval.approval_id)
        if key in self.announced:
            return
        self.announced.add(key)
        self.say.print(
            f"  ⏸ {escape(run.ticket.id)} waits for approval [bold]"
            f"{escape(approval.approval_id)}[/] "
            + escape(
                f"({approval.context.get('category', '?')}, confidence "
                f"{approval.context.get('confidence', '?')}, role {approval.required_role}): "
                f"decide it in the inbox {self.inbox_url}"
            ),
            highlight=False,
        )

    def _progress(self, run: TicketRun) -> None:
        status = run.result.status if run.result is not None else "failed"
        decided = "".join(
            escape(f"; {d.approval_id} {d.decision} by {d.reviewer}") for d in run.decided
        )
        self.say.print(
            f"  {'✓' if status == 'completed' else '✗'} {escape(run.ticket.id)} {status}{decided} "
            f"({len(self.finished)} of {len(self.handles)} runs finished)",
            highlight=False,
        )

    async def end_unfinished(self, reason: str) -> None:
        """After an error or Ctrl-C, leave no demo run waiting in Temporal.
        Terminated, not cancelled: a cancellation needs a worker to act on
        it, and the worker may be the next thing the demo stops."""
        unfinished = [h for h in self.handles if h.id not in self.finished]
        for handle in unfinished:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handle.terminate(reason=reason), timeout=3)


PERSON_DECISIONS = ("approve", "edit", "reject")
"""Decisions a person takes (not a deadline's `timeout_*` or `escalate`)."""


def people_decisions(run: TicketRun) -> list[DecidedApproval]:
    """The last decision a person took on each of the run's approvals."""
    result = run.result
    if result is None:
        return []
    decided = []
    for approval in result.approvals:
        taken = [d for d in approval.decisions if d.decision in PERSON_DECISIONS]
        if taken:
            decided.append(
                DecidedApproval(
                    ticket=run.ticket.id,
                    run_id=run.run_id,
                    approval_id=approval.approval_id,
                    decision=taken[-1].decision,  # type: ignore[arg-type]
                    reviewer=taken[-1].reviewer,
                )
            )
    return decided
