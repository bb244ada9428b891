"""The side-by-side table `chorus compare` prints for people (the JSON line
and the HTML report carry the same figures)."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from core.evals.results import EvalReport


def print_summary(console: Console, report: EvalReport, html: Path, plot: Path) -> None:
    title = f"{report.eval_set}: {report.cases_scored} of {report.cases_total} runs scored"
    if report.simulated:
        title += " (simulated models)"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("variant", "passed", "95% CI", "cost", "$/case", "p50/p95s", "ask", "esc"):
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=True)
    for v in report.variants:
        mark = " *" if v.variant == report.recommended else ""
        table.add_row(
            f"{v.variant}{mark}",
            f"{v.pass_rate:.0%} {v.passed}/{v.cases}",
            f"{v.ci_low:.0%}-{v.ci_high:.0%}",
            f"${v.cost_usd:.3f}",
            f"${v.cost_per_case_usd:.4f}",
            f"{v.p50_latency_s:.1f}/{v.p95_latency_s:.1f}",
            f"{v.approval_rate:.0%}",
            f"{v.escalation_rate:.0%}",
        )
    console.print(table)
    if report.stopped_reason:
        console.print(f"[yellow]stopped early: {report.stopped_reason}[/]", highlight=False)
    console.print(
        f"recommended (*): [bold]{report.recommended or 'none'}[/], "
        f"{report.recommendation_rule}; ask: runs that asked a person to approve, "
        "esc: runs whose cascade escalated",
        highlight=False,
    )
    console.print(f"report: {html}\nplot:   {plot}", highlight=False)
