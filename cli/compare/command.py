"""`chorus compare EVALSET --variants a,b,c`: the command. Everything it is
given is checked before anything starts (the eval set file, each variant
against the deployment's catalog, every case against every variant's input
schema, concurrency, budget, judge alias); then cli/compare/run.py runs it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from cli.chain_checks import catalog, load_checked_chain
from cli.console import configure_logging, console, err_console, fail, load_settings

DEFAULT_OUT = Path("reports") / "compare"
EXIT_STOPPED = 3
"""Exit code of an evaluation stopped before every case was scored (budget)."""
EXIT_TERMINATED = 143
"""Exit code after SIGTERM (128 + 15, what a shell reports for it)."""


def compare(
    evalset: Annotated[Path, typer.Argument(help="eval set file (.yaml or .jsonl)")],
    variants: Annotated[
        str, typer.Option("--variants", help="chains to compare, comma-separated: a,b,c")
    ],
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="child runs at once (1-64)")
    ] = 4,
    max_cost_usd: Annotated[
        float | None,
        typer.Option("--max-cost-usd", help="budget of the whole evaluation, judge included"),
    ] = None,
    judge: Annotated[
        str | None, typer.Option("--judge", help="model alias that also grades each answer")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="where the HTML report and the plot go")
    ] = DEFAULT_OUT,
    eval_id: Annotated[
        str | None, typer.Option("--eval-id", help="the evaluation's id (default: a new one)")
    ] = None,
    stack: Annotated[
        bool,
        typer.Option(
            "--stack/--no-stack",
            help="start (or reuse) the embedded dev stack; --no-stack uses the "
            "deployment at CHORUS_TEMPORAL_ADDRESS and its workers",
        ),
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="only the final JSON line on stdout")
    ] = False,
) -> None:
    """Run every case of EVALSET through every variant and compare pass rate
    (95% interval), cost and latency side by side.

    Ends with one JSON line: per variant pass_rate, ci_low, ci_high, cost_usd,
    p50_latency_s, p95_latency_s; the recommended variant (the cheapest within
    5 points of the best pass rate); the report and plot paths. Exits 0 when
    every case was scored, 3 when the budget stopped the evaluation first.
    """
    settings = load_settings()
    configure_logging(settings)
    from activities.evals.types import EvalInput
    from cli.compare.run import CompareError, CompareTerminated, run_compare
    from core.evals.spec import EvalSetError, load_eval_set
    from core.problems import ApiProblem
    from runs.evals import prepare_evaluation, simulated_aliases

    try:
        eval_set = load_eval_set(evalset)
    except EvalSetError as exc:
        fail(str(exc))
    names = [name.strip() for name in variants.split(",") if name.strip()]
    if not names:
        fail("--variants names no chain: give chain names separated by commas")
    specs = [load_checked_chain(name, settings) for name in names]
    try:
        inp: EvalInput = prepare_evaluation(
            eval_set,
            specs,
            catalog=catalog(settings),
            eval_id=eval_id,
            concurrency=concurrency,
            max_cost_usd=max_cost_usd,
            judge_alias=judge,
            simulator_aliases=simulated_aliases(settings.models_file),
        )
    except ApiProblem as exc:
        fail(str(exc))
    say = err_console if as_json else console
    try:
        outcome = asyncio.run(run_compare(settings, inp, out_dir=out, use_stack=stack, say=say))
    except (CompareError, ApiProblem) as exc:
        fail(str(exc))
    except CompareTerminated as exc:
        err_console.print(
            f"[yellow]terminated: stopped what chorus compare started; evaluation "
            f"{exc.eval_id} goes on whenever a worker serves it; "
            f"GET /v1/evals/{exc.eval_id} reads it[/]",
            highlight=False,
        )
        raise typer.Exit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted: evaluation {inp.eval_id} goes on whenever a worker "
            f"serves it; GET /v1/evals/{inp.eval_id} reads it[/]",
            highlight=False,
        )
        raise typer.Exit(130) from None
    if not as_json:
        from cli.compare.table import print_summary

        print_summary(console, outcome.report, outcome.html, outcome.plot)
    print(json.dumps(outcome.summary()))
    raise typer.Exit(0 if outcome.report.stopped_reason is None else EXIT_STOPPED)
