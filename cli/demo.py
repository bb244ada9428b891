"""`chorus demo`: the flagship chain, support_triage, on sample tickets.

Five tickets of the fictional store Larkspur Outfitters run at once on the
embedded stack (started here when none runs, and stopped again): the cheap
model answers simple questions, the strong model answers complex ones from
the Help Center with citations, the writer model puts the answer in the brand
voice, guards check citations and personal data, and refunds and uncertain
tickets wait for a person, whom the demo stands in for.

The models are the built-in SIMULATOR, which cannot judge a ticket: the
classifier's verdict for each ticket is scripted (one single-use simulator
rule per ticket). Everything after that verdict runs for real, and the output
says so.

The cost comparison re-prices the tokens every model call actually used at the
`strong` alias's prices: what the same work would have cost had every call
gone to the strong model. It does not pretend the strong model would have
used the same number of calls or tokens more wisely; it is the usual
"route versus one big model" yardstick, and the demo prints how it is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from activities.gateway.types import ModelPrices
    from cli.devstack import DevStack
    from core.chain_spec import ChainSpec
    from core.settings import Settings
    from workflows.types import ApprovalState, ChainResult, StepRecord

DEMO_CHAIN = "support_triage"
DEMO_REVIEWER = "demo-reviewer"
COMPARISON_ALIAS = "strong"
"""The one model the routed cost is compared against."""
ROUTE_STEP = "answer"
ROUTE_KINDS = {"branches[0]": "simple", "otherwise": "complex"}
"""support_triage's route: its first branch is the simple (cheap) answer."""
APPROVAL_ENDPOINT = "POST /v1/runs/{run_id}/approvals/{approval_id}"
SCRIPTED_NOTE = (
    "The models are the built-in SIMULATOR, which cannot judge a ticket, so the "
    "classifier's verdict for each ticket is scripted (one single-use simulator rule "
    "per ticket). Everything after the verdict runs for real: routing, retrieval, "
    "citation and personal-data checks, approvals, and cost accounting. The simulator's "
    "replies are placeholder text that echoes the prompt."
)
STRONG_ONLY_METHOD = (
    "same tokens, strong prices: every model call's actual token usage re-priced at "
    "the 'strong' alias's prices"
)

_PAST = {"approve": "approved", "edit": "edited", "reject": "rejected"}
_POLL_INTERVAL_S = 0.2
_CITATION = re.compile(r"\[([^\[\]\s]+#\d+)\]")


class DemoError(RuntimeError):
    """The demo could not set up (stack, knowledge, registry or simulator)."""


# ------------------------------------------------------------------ tickets


@dataclass(frozen=True)
class Verdict:
    """What the classifier step answers for one ticket (scripted: see module doc)."""

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


def classifier_rule(ticket: SampleTicket) -> Any:
    """A single-use simulator rule answering the classify step of this
    ticket only, so a shared simulator is left as it was once it is used."""
    from simulator.models import Rule

    return Rule(
        model="sim-mini",
        match=f"Classify this ticket(?s:.*){re.escape(ticket.message)}",
        json=ticket.verdict.as_json(),
        times=1,
    )


# ---------------------------------------------------------------- analysis


def strong_only_cost(result: ChainResult, prices: ModelPrices) -> float:
    """What the run's model calls would have cost at `prices`: every call's
    actual token usage (failed and re-asked calls included, as they were
    paid for) re-priced. Same tokens, other prices."""
    return sum(prices.cost(call.usage) for step in result.steps.values() for call in step.calls)


def cost_by_model(result: ChainResult) -> dict[str, float]:
    return {alias: usage.cost_usd for alias, usage in sorted(result.usage.per_model.items())}


def path_kind(result: ChainResult) -> str | None:
    """`simple` or `complex`: the branch the chain's route took (None when
    the run failed before it routed)."""
    record = result.steps.get(ROUTE_STEP)
    if record is None or record.branch is None:
        return None
    return ROUTE_KINDS.get(record.branch, record.branch)


def describe_path(result: ChainResult) -> list[str]:
    """Each step the run took, in order, as one short line: the model it ran
    on, what it retrieved or cited, whether a check passed, who approved."""
    retrieved: set[str] = set()
    for record in result.steps.values():
        output = record.output if isinstance(record.output, dict) else {}
        if record.kind == "retrieve":
            retrieved |= {p["id"] for p in output.get("passages", []) if "id" in p}
    path: list[str] = []
    for name, record in result.steps.items():
        label = _describe_step(name, record, result, retrieved)
        if record.status in ("failed", "rejected") and "✗" not in label:
            label += f" ✗ {record.status}"
        path.append(label)
    return path


def _describe_step(name: str, record: StepRecord, result: ChainResult, retrieved: set[str]) -> str:
    if record.kind == "route":
        return ROUTE_KINDS.get(record.branch or "", record.branch or name)
    if record.kind == "model":
        label = f"{name}[{record.model}]" if record.model else name
        if isinstance(record.output, str):
            cited = [c for c in dict.fromkeys(_CITATION.findall(record.output)) if c in retrieved]
            if cited:
                label += " cites " + ", ".join(cited)
        return label
    if record.kind == "retrieve":
        output = record.output if isinstance(record.output, dict) else {}
        collection = output.get("collection", "?")
        return f"{name}({collection}: {len(output.get('passages', []))} passages)"
    if record.kind == "guard":
        if record.status != "completed":
            return f"{name} ✗"
        retries = len(record.violations)
        return f"{name} ✓" + (
            f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        )
    if record.kind == "approval":
        if record.branch and record.branch.startswith("not required"):
            return "approval: not required"
        decision = _decision_of(result, name)
        if decision is None:
            return f"approval: {record.status}"
        return f"approval: {_PAST.get(decision[0], decision[0])} by {decision[1]}"
    return f"{name} ({record.kind})"


def _decision_of(result: ChainResult, step: str) -> tuple[str, str] | None:
    """(decision, reviewer) of the last decision taken on this step's approval."""
    for approval in result.approvals:
        if approval.step == step and approval.decisions:
            last = approval.decisions[-1]
            return last.decision, last.reviewer
    return None


# -------------------------------------------------------------- the summary


class ApprovalTaken(BaseModel):
    decision: str
    reviewer: str


class DecidedApproval(BaseModel):
    ticket: str
    run_id: str
    approval_id: str
    decision: Literal["approve", "edit"]
    reviewer: str


class TicketSummary(BaseModel):
    id: str
    run_id: str
    customer_name: str
    message: str
    status: str
    category: str | None = None
    complexity: str | None = None
    urgency: str | None = None
    confidence: float | None = None
    verdict_scripted: bool = True
    path_kind: str | None = None
    path: list[str] = Field(default_factory=list)
    reply: str | None = None
    cost_usd: float = 0.0
    strong_only_cost_usd: float = 0.0
    cost_by_model: dict[str, float] = Field(default_factory=dict)
    approval: ApprovalTaken | None = None
    error: str | None = None


class ApprovalsSummary(BaseModel):
    count: int
    decided: list[DecidedApproval]


class StackSummary(BaseModel):
    started: dict[str, int]
    """Service name → pid of each process this demo started (and stopped)."""
    reused: list[str]


class DemoSummary(BaseModel):
    """What `chorus demo --json` prints: one object."""

    chain: str
    version: int
    simulated: bool = True
    note: str = SCRIPTED_NOTE
    tickets: list[TicketSummary]
    paths: dict[str, int]
    routed_cost_usd: float
    strong_only_cost_usd: float
    strong_only_method: str = STRONG_ONLY_METHOD
    savings_ratio: float
    """Share of the strong-only cost that routing saved: 1 - routed / strong-only."""
    approvals: ApprovalsSummary
    temporal_ui: str
    stack: StackSummary


@dataclass
class TicketRun:
    """One ticket's run as the demo drove it."""

    ticket: SampleTicket
    run_id: str
    result: ChainResult | None = None
    error: str | None = None
    decided: list[DecidedApproval] = field(default_factory=list)

    def summary(self, prices: ModelPrices) -> TicketSummary:
        ticket, result = self.ticket, self.result
        summary = TicketSummary(
            id=ticket.id,
            run_id=self.run_id,
            customer_name=ticket.customer_name,
            message=ticket.message,
            status="failed" if result is None else result.status,
            error=self.error if self.error is not None else (result.error if result else None),
        )
        if result is None:
            return summary
        verdict = result.steps.get("classify")
        if verdict is not None and isinstance(verdict.output, dict):
            summary.category = verdict.output.get("category")
            summary.complexity = verdict.output.get("complexity")
            summary.urgency = verdict.output.get("urgency")
            summary.confidence = verdict.output.get("confidence")
        decision = _decision_of(result, "review")
        summary.path_kind = path_kind(result)
        summary.path = describe_path(result)
        summary.reply = result.output if isinstance(result.output, str) else None
        summary.cost_usd = _usd(result.usage.cost_usd)
        summary.strong_only_cost_usd = _usd(strong_only_cost(result, prices))
        summary.cost_by_model = {alias: _usd(c) for alias, c in cost_by_model(result).items()}
        summary.approval = (
            ApprovalTaken(decision=decision[0], reviewer=decision[1]) if decision else None
        )
        return summary


def _usd(value: float) -> float:
    """Costs in the summary, without float noise (1e-10 USD is far below any price)."""
    return round(value, 10)


def summarize(
    spec: ChainSpec,
    runs: list[TicketRun],
    prices: ModelPrices,
    *,
    temporal_ui: str,
    stack: StackSummary,
) -> DemoSummary:
    tickets = [run.summary(prices) for run in runs]
    routed = sum(t.cost_usd for t in tickets)
    strong = sum(t.strong_only_cost_usd for t in tickets)
    decided = [d for run in runs for d in run.decided]
    return DemoSummary(
        chain=spec.name,
        version=spec.version,
        tickets=tickets,
        paths=dict(Counter(t.path_kind for t in tickets if t.path_kind)),
        routed_cost_usd=_usd(routed),
        strong_only_cost_usd=_usd(strong),
        savings_ratio=round(1 - routed / strong, 4) if strong > 0 else 0.0,
        approvals=ApprovalsSummary(count=len(decided), decided=decided),
        temporal_ui=temporal_ui,
        stack=stack,
    )


# ------------------------------------------------------------------ running


def comparison_prices(settings: Settings) -> ModelPrices:
    """The `strong` alias's prices, read from the model registry."""
    from activities.gateway.registry import ModelRegistry, RegistryError

    try:
        registry = ModelRegistry.from_file(
            settings.models_file, simulator_base_url=settings.simulator_base_url
        )
        return registry.describe(COMPARISON_ALIAS).prices
    except (RegistryError, KeyError) as exc:
        raise DemoError(
            f"cannot price the strong-only comparison from {settings.models_file}: {exc}"
        ) from exc


def load_sample_knowledge(settings: Settings) -> dict[str, int]:
    """Ingest the Help Center and the brand guide (idempotent)."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.engine import make_engine
    from store.sample_knowledge import ingest_sample_knowledge
    from store.schema import create_all

    engine = make_engine(settings.effective_database_url)
    try:
        create_all(engine)
        return ingest_sample_knowledge(engine)
    except SQLAlchemyError as exc:
        raise DemoError(f"cannot load the sample knowledge into the database: {exc}") from exc
    finally:
        engine.dispose()


class _Driver:
    """Starts the ticket runs, stands in for the reviewer, collects results."""

    def __init__(self, client: Client, settings: Settings, spec: ChainSpec, say: Console) -> None:
        from runs.client import RunClient

        self.runs = RunClient(client, task_queue=settings.task_queue)
        self.settings = settings
        self.spec = spec
        self.say = say
        self.handles: list[WorkflowHandle[Any, ChainResult]] = []
        self.finished: set[str] = set()

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
                    if approval.approval_id not in {d.approval_id for d in run.decided}:
                        await self._decide(run, handle, approval)
            try:
                run.result = result_task.result()
            except WorkflowFailureError as exc:
                run.result = partial_result(exc)
                run.error = failure_message(exc)
            self.finished.add(handle.id)
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

    async def end_unfinished(self, reason: str) -> None:
        """After an error or Ctrl-C, leave no demo run waiting in Temporal.
        Terminated, not cancelled: a cancellation needs a worker to act on
        it, and the worker may be the next thing the demo stops."""
        unfinished = [h for h in self.handles if h.id not in self.finished]
        for handle in unfinished:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handle.terminate(reason=reason), timeout=3)


async def run_demo(
    settings: Settings,
    spec: ChainSpec,
    *,
    as_json: bool,
    console: Console,
    err_console: Console,
    tickets: tuple[SampleTicket, ...] = SAMPLE_TICKETS,
) -> int:
    """Run the demo; return the exit code (0: every ticket completed).

    Raises DemoError when the demo cannot be set up. Stops what it started
    whatever happens, SIGTERM and Ctrl-C included.
    """
    from cli.devstack import DevStack, DevStackError

    say = err_console if as_json else console
    prices = comparison_prices(settings)
    if not as_json:
        console.print(
            Panel(
                Text.assemble(
                    (f"{spec.name} v{spec.version}", "bold"),
                    f" on {len(tickets)} tickets of Larkspur Outfitters (a fictional store)\n",
                    (SCRIPTED_NOTE, "yellow"),
                ),
                title="chorus demo",
                expand=False,
            )
        )
    say.print("[dim]starting the dev stack (reusing what already runs)…[/]")

    terminated = asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_sigterm() -> None:
        terminated.set()
        if main is not None:
            main.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    stack = DevStack(settings, api=False)  # the demo talks to Temporal directly
    try:
        try:
            await stack.start()
        except DevStackError as exc:
            raise DemoError(str(exc)) from exc
        _print_stack(say, stack)
        runs = await _run_tickets(settings, spec, stack, tickets, say)
        stack_summary = StackSummary(started=stack.pids, reused=list(stack.reused))
    except asyncio.CancelledError:
        if terminated.is_set():
            err_console.print("[yellow]terminated: stopped what the demo started[/]")
            return 143
        raise
    finally:
        await stack.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)

    summary = summarize(
        spec, runs, prices, temporal_ui=settings.temporal_ui_url, stack=stack_summary
    )
    if as_json:
        print(summary.model_dump_json())
    else:
        render_summary(console, summary, runs, prices)
    failed = [t for t in summary.tickets if t.status != "completed"]
    for ticket in failed:
        err_console.print(
            "[bold red]error:[/] "
            + escape(
                f"ticket {ticket.id} (run {ticket.run_id}) ended "
                f"{ticket.status}: {ticket.error or 'no error recorded'}"
            ),
            highlight=False,
        )
    return 1 if failed else 0


async def _run_tickets(
    settings: Settings,
    spec: ChainSpec,
    stack: DevStack,
    tickets: tuple[SampleTicket, ...],
    say: Console,
) -> list[TicketRun]:
    from core.temporal import TemporalConnectError, connect
    from simulator.control import SimulatorControl, SimulatorControlError

    counts = await asyncio.to_thread(load_sample_knowledge, settings)
    say.print(
        "knowledge: "
        + ", ".join(f"{name} ({n} document{'' if n == 1 else 's'})" for name, n in counts.items())
        + " loaded into the application database",
        highlight=False,
    )
    try:
        async with SimulatorControl(stack.simulator_url) as control:
            await control.add_rules(*(classifier_rule(t) for t in tickets))
    except (SimulatorControlError, OSError) as exc:
        raise DemoError(f"cannot script the simulator at {stack.simulator_url}: {exc}") from exc
    say.print(
        f"classifier verdicts scripted on the simulator for {len(tickets)} tickets; "
        "starting the runs at once…",
        highlight=False,
    )
    try:
        client = await connect(settings)
    except TemporalConnectError as exc:
        raise DemoError(str(exc)) from exc
    driver = _Driver(client, settings, spec, say)
    try:
        return await driver.run_all(tickets)
    except BaseException as exc:
        reason = (
            "chorus demo interrupted"
            if isinstance(exc, asyncio.CancelledError)
            else (f"chorus demo failed: {exc}")
        )
        await driver.end_unfinished(reason)
        raise


# ---------------------------------------------------------------- rendering


def _print_stack(say: Console, stack: DevStack) -> None:
    parts = []
    for name in stack.services:
        if name in stack.started:
            parts.append(f"{name} started (pid {stack.started[name].pid})")
        elif name in stack.reused:
            parts.append(f"{name} already running")
    say.print("stack: " + ", ".join(parts), highlight=False)


def _money(value: float) -> str:
    return f"${value:.6f}"


def _model_table(result: ChainResult, prices: ModelPrices) -> Table:
    table = Table(title="cost by model", title_justify="left", expand=False)
    table.add_column("model")
    table.add_column("calls", justify="right")
    table.add_column("input tok", justify="right")
    table.add_column("output tok", justify="right")
    table.add_column("cost", justify="right")
    table.add_column("at strong prices", justify="right", style="dim")
    for alias, usage in sorted(result.usage.per_model.items()):
        table.add_row(
            alias,
            str(usage.calls),
            str(usage.usage.input_tokens),
            str(usage.usage.output_tokens),
            _money(usage.cost_usd),
            _money(prices.cost(usage.usage)),
        )
    return table


def render_summary(
    console: Console, summary: DemoSummary, runs: list[TicketRun], prices: ModelPrices
) -> None:
    for index, (ticket, run) in enumerate(zip(summary.tickets, runs, strict=True), start=1):
        console.rule(escape(f"ticket {index}/{len(runs)} · {ticket.id} · run {ticket.run_id}"))
        console.print(
            Text.assemble((f"{ticket.customer_name}: ", "bold"), (f"“{ticket.message}”", "italic"))
        )
        if ticket.category is not None:
            console.print(
                f"verdict (scripted): {ticket.category} · {ticket.complexity} · urgency "
                f"{ticket.urgency} · confidence {ticket.confidence}",
                style="dim",
                highlight=False,
                markup=False,
            )
        if ticket.path:
            console.print(Text("path: ", style="bold") + Text(" → ".join(ticket.path)))
        if ticket.status != "completed":
            console.print(f"[red]{ticket.status}:[/] {escape(str(ticket.error))}", highlight=False)
        if ticket.reply is not None:
            simulated = ticket.reply.startswith("[simulated ")
            title = "reply (simulator placeholder text)" if simulated else "reply"
            console.print(Panel(Text(ticket.reply), title=title, expand=False))
        if run.result is not None and run.result.usage.per_model:
            console.print(_model_table(run.result, prices))

    console.rule("totals")
    table = Table(expand=False)
    table.add_column("ticket", no_wrap=True)
    table.add_column("path", no_wrap=True)
    table.add_column("approval", no_wrap=True)
    table.add_column("routed cost", justify="right")
    table.add_column("strong only", justify="right")
    for ticket in summary.tickets:
        approval = (
            _PAST.get(ticket.approval.decision, ticket.approval.decision)
            if ticket.approval
            else "—"
        )
        table.add_row(
            ticket.id,
            ticket.path_kind or ticket.status,
            approval,
            _money(ticket.cost_usd),
            _money(ticket.strong_only_cost_usd),
        )
    table.add_section()
    table.add_row(
        Text("total", style="bold"),
        " ".join(f"{n} {kind}" for kind, n in sorted(summary.paths.items())),
        f"{summary.approvals.count} decided",
        Text(_money(summary.routed_cost_usd), style="bold"),
        Text(_money(summary.strong_only_cost_usd), style="bold"),
    )
    console.print(table)
    multiple = (
        f" ({summary.strong_only_cost_usd / summary.routed_cost_usd:.1f} times the routed cost)"
        if summary.routed_cost_usd > 0
        else ""
    )
    console.print(
        f"Routed: [bold]{_money(summary.routed_cost_usd)}[/]; every ticket on the strong "
        f"model alone: [bold]{_money(summary.strong_only_cost_usd)}[/]{multiple}. "
        f"Routing saved [bold green]{summary.savings_ratio:.0%}[/].",
        highlight=False,
    )
    console.print(
        f"How: {STRONG_ONLY_METHOD} (input ${prices.input_per_mtok:.2f}, output "
        f"${prices.output_per_mtok:.2f} per million tokens). Prices are the simulator's "
        "made-up prices in chains/models.yaml.",
        style="dim",
        highlight=False,
    )
    if summary.approvals.count:
        console.print(
            f"{summary.approvals.count} approvals decided by {DEMO_REVIEWER} standing in for "
            f"a person (normally: {APPROVAL_ENDPOINT}).",
            style="dim",
            highlight=False,
        )
    console.print(
        f"Histories of every run: Temporal UI {summary.temporal_ui} (while a stack runs, "
        "e.g. `chorus dev`).",
        style="dim",
        highlight=False,
    )
