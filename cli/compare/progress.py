"""The progress bar of `chorus compare`: one bar per variant, fed by the
EvalWorkflow's progress query (cases scored of the total, passed, cost)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from activities.evals.types import EvalProgress


class CompareProgress:
    """Rich bars, one per variant, updated from each progress answer."""

    def __init__(self, console: Console, variants: list[str], cases: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[passed]} passed  ${task.fields[cost]:.4f}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks = {
            name: self.progress.add_task(name, total=cases, passed=0, cost=0.0) for name in variants
        }

    def __enter__(self) -> CompareProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, state: EvalProgress) -> None:
        for variant in state.variants:
            task = self.tasks.get(variant.variant)
            if task is not None:
                self.progress.update(
                    task,
                    completed=variant.done + variant.cut,
                    passed=variant.passed,
                    cost=variant.cost_usd,
                )
