"""The demo as a person reads it: the opening panel, the stack line, each
ticket's path, reply and cost per model, the totals and how they are built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cli.demo.analysis import PAST_TENSE, STRONG_ONLY_METHOD
from cli.demo.driver import APPROVAL_ENDPOINT, DEMO_REVIEWER
from cli.demo.simulator_script import SCRIPTED_NOTE

if TYPE_CHECKING:
    from rich.console import Console

    from activities.gateway.types import ModelPrices
    from cli.demo.reviewer_key import ReviewerKey
    from cli.demo.summary import DemoSummary, TicketRun, TicketSummary
    from cli.devstack.stack import DevStack
    from core.chain_spec import ChainSpec
    from workflows.types import ChainResult


def print_banner(console: Console, spec: ChainSpec, ticket_count: int) -> None:
    console.print(
        Panel(
            Text.assemble(
                (f"{spec.name} v{spec.version}", "bold"),
                f" on {ticket_count} tickets of Larkspur Outfitters (a fictional store)\n",
                (SCRIPTED_NOTE, "yellow"),
            ),
            title="chorus demo",
            expand=False,
        )
    )


def print_stack(say: Console, stack: DevStack) -> None:
    parts = []
    for name in stack.services:
        if name in stack.started:
            parts.append(f"{name} started (pid {stack.started[name].pid})")
        elif name in stack.reused:
            parts.append(f"{name} already running")
    say.print("stack: " + ", ".join(parts), highlight=False)


def print_inbox(say: Console, inbox_url: str, key: ReviewerKey) -> None:
    """Where a person decides the demo's approvals, and the key to sign in
    with: alone on its line and never wrapped, so it copies whole."""
    say.print(f"[bold]inbox:[/] {escape(inbox_url)}", highlight=False, soft_wrap=True)
    say.print(
        f"reviewer key [bold]{escape(key.name)}[/] to sign in with (shown once, revoked "
        "when the demo ends):",
        highlight=False,
    )
    say.print(key.key, highlight=False, markup=False, soft_wrap=True)


def print_failures(err_console: Console, failed: list[TicketSummary]) -> None:
    for ticket in failed:
        err_console.print(
            "[bold red]error:[/] "
            + escape(
                f"ticket {ticket.id} (run {ticket.run_id}) ended "
                f"{ticket.status}: {ticket.error or 'no error recorded'}"
            ),
            highlight=False,
        )


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
            PAST_TENSE.get(ticket.approval.decision, ticket.approval.decision)
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
    reviewers = sorted({d.reviewer for d in summary.approvals.decided})
    if reviewers == [DEMO_REVIEWER]:
        console.print(
            f"{summary.approvals.count} approvals decided by {DEMO_REVIEWER} standing in for "
            f"a person (normally: {APPROVAL_ENDPOINT}, or the inbox: `chorus demo "
            "--interactive`).",
            style="dim",
            highlight=False,
        )
    elif reviewers:
        console.print(
            f"{summary.approvals.count} approvals decided in the inbox by {', '.join(reviewers)}.",
            style="dim",
            highlight=False,
        )
    console.print(
        f"Histories of every run: Temporal UI {summary.temporal_ui} (while a stack runs, "
        "e.g. `chorus dev`).",
        style="dim",
        highlight=False,
    )
