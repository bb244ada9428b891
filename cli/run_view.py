"""How `chorus run` shows a run: the live step table while it runs, then
its status, steps, output and cost per model."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.json import JSON
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cli.console import console

_STATUS_STYLE = {"running": "yellow", "completed": "green", "failed": "red"}


def render_state(state: Any, waits: Any = None) -> Table:
    """Live view of a run (the `state` query) for `chorus run`; `waits`: what
    its model calls wait for (default: the state's own)."""
    table = Table(
        title=escape(f"{state.chain} v{state.version} — {state.status}"),
        title_justify="left",
        expand=False,
    )
    table.add_column("step")
    table.add_column("kind")
    table.add_column("status")
    table.add_column("model")
    table.add_column("cost (USD)", justify="right")
    for name, step in state.steps.items():
        style = _STATUS_STYLE.get(step.status, "")
        table.add_row(
            Text(name),
            step.kind,
            Text(step.status, style=style),
            Text(step.model or ""),
            f"{step.cost_usd:.6f}",
        )
    for name in state.current_steps:
        if name not in state.steps:
            table.add_row(Text(name), "", Text("running", style="yellow"), "", "")
    for wait in state.waits if waits is None else waits:
        table.add_row(
            Text(wait.step or ""),
            "",
            Text(wait.message, style="magenta"),
            Text(wait.alias or ""),
            "",
        )
    table.caption = f"spent ${state.usage.cost_usd:.6f}"
    return table


def usage_table(result: Any) -> Table:
    """Per-model calls, tokens, latency and cost of a run, with a total row."""
    table = Table(title="usage by model", title_justify="left")
    table.add_column("model")
    table.add_column("calls", justify="right")
    table.add_column("input tok", justify="right")
    table.add_column("output tok", justify="right")
    table.add_column("latency (ms)", justify="right")
    table.add_column("cost (USD)", justify="right")
    usage = result.usage
    for alias, model in sorted(usage.per_model.items()):
        table.add_row(
            Text(alias),
            str(model.calls),
            str(model.usage.input_tokens),
            str(model.usage.output_tokens),
            f"{model.latency_ms:.0f}",
            f"{model.cost_usd:.6f}",
        )
    table.add_section()
    table.add_row(
        Text("total", style="bold"),
        str(sum(m.calls for m in usage.per_model.values())),
        str(usage.total.input_tokens),
        str(usage.total.output_tokens),
        "",
        Text(f"{usage.cost_usd:.6f}", style="bold"),
    )
    return table


def _output_renderable(output: Any) -> Any:
    if isinstance(output, str):
        return Text(output)
    return JSON.from_data(output, default=str)


def render_result(result: Any) -> None:
    """Print a run's outcome: status, steps taken, final output, usage and cost.

    The one place that decides what `chorus run` shows (the lead may adjust it).
    """
    style = _STATUS_STYLE.get(result.status, "")
    taken = []
    for name, step in result.steps.items():
        label = name
        if step.branch:
            label += f" → {step.branch}"
        if step.model:
            label += f" [{step.model}]"
        taken.append(label)
    header = Text.assemble(
        (f"{result.chain} v{result.version} ", "bold"), (result.status, style or "")
    )
    parts: list[Any] = [header, Text("steps: " + ", ".join(taken), style="dim")]
    if result.error:
        parts.append(Text(f"error: {result.error}", style="red"))
    console.print(Group(*parts))
    console.print(Panel(_output_renderable(result.output), title="output", expand=False))
    console.print(usage_table(result))
