"""`run_compare`: one evaluation from start to report. Brings up (or reuses)
the dev stack unless told to use a deployment, loads the sample knowledge on
the dev stack, starts the EvalWorkflow, shows its progress until it ends,
then writes the HTML report and the plot from the stored scores.

The evaluation is durable: Ctrl-C or SIGTERM here stops watching (and the
dev stack this command started: its Temporal server, simulator and worker),
not the evaluation; it carries on whenever a worker serves its task queue,
and `GET /v1/evals/{id}` reads it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activities.evals.types import EvalInput
from cli.compare.progress import CompareProgress
from core.evals.results import CaseScore, EvalReport

if TYPE_CHECKING:
    from rich.console import Console

    from core.settings import Settings
    from runs.evals import EvalClient

POLL_INTERVAL_S = 0.5


class CompareError(Exception):
    """The comparison could not be run (stack, Temporal, database); the
    message says what to do."""


class CompareTerminated(Exception):
    """SIGTERM arrived: what this command started has been stopped; the
    evaluation itself goes on whenever a worker serves it."""

    def __init__(self, eval_id: str) -> None:
        super().__init__(f"terminated while evaluation {eval_id} ran")
        self.eval_id = eval_id


@dataclass(frozen=True)
class CompareOutcome:
    report: EvalReport
    html: Path
    plot: Path
    eval_id: str
    elapsed_s: float
    """Wall time of the whole command: stack, evaluation and report."""

    def summary(self) -> dict[str, Any]:
        """The one JSON line `chorus compare` ends with."""
        return {
            "eval_id": self.eval_id,
            "eval_set": self.report.eval_set,
            "simulated": self.report.simulated,
            "variants": [
                v.model_dump(mode="json", exclude={"by_category"}) for v in self.report.variants
            ],
            "recommended": self.report.recommended,
            "recommendation_rule": self.report.recommendation_rule,
            "cases_scored": self.report.cases_scored,
            "cases_total": self.report.cases_total,
            "stopped_reason": self.report.stopped_reason,
            "report": str(self.html),
            "plot": str(self.plot),
            "elapsed_s": round(self.elapsed_s, 1),
        }


async def run_compare(
    settings: Settings,
    inp: EvalInput,
    *,
    out_dir: Path,
    use_stack: bool,
    say: Console,
) -> CompareOutcome:
    """Run the evaluation `inp` (already checked) and write its report.

    Stops what it started whatever happens: SIGTERM (a supervisor, `kill`,
    `make` being stopped) cancels the work as Ctrl-C does, so the dev stack's
    processes are stopped before CompareTerminated is raised, instead of the
    interpreter dying at once and leaving them running.
    """
    terminated = asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_sigterm() -> None:
        terminated.set()
        if main is not None:
            main.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await _run_compare(settings, inp, out_dir=out_dir, use_stack=use_stack, say=say)
    except asyncio.CancelledError:
        if terminated.is_set():
            raise CompareTerminated(inp.eval_id) from None
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


async def _run_compare(
    settings: Settings,
    inp: EvalInput,
    *,
    out_dir: Path,
    use_stack: bool,
    say: Console,
) -> CompareOutcome:
    from cli.devstack.errors import DevStackError
    from cli.devstack.stack import DevStack

    began = time.monotonic()
    stack = DevStack(settings, api=False) if use_stack else None
    try:
        if stack is not None:
            say.print("[dim]starting the dev stack (reusing what already runs)…[/]")
            try:
                await stack.start()
            except DevStackError as exc:
                raise CompareError(str(exc)) from exc
            await asyncio.to_thread(_load_sample_knowledge, settings)
        report = await _evaluate(settings, inp, say)
    finally:
        if stack is not None:
            await stack.stop()
    scores = await asyncio.to_thread(_stored_scores, settings, inp.eval_id)
    from cli.compare.report import ReportError, write_report

    try:
        files = await asyncio.to_thread(write_report, report, scores, out_dir)
    except ReportError as exc:
        raise CompareError(
            f"evaluation {inp.eval_id} finished but its report was not written: {exc}"
        ) from exc
    return CompareOutcome(
        report=report,
        html=files.html,
        plot=files.plot,
        eval_id=inp.eval_id,
        elapsed_s=time.monotonic() - began,
    )


async def _evaluate(settings: Settings, inp: EvalInput, say: Console) -> EvalReport:
    from core.temporal import TemporalConnectError, connect
    from runs.evals import EvalClient

    try:
        client = await connect(settings)
    except TemporalConnectError as exc:
        raise CompareError(str(exc)) from exc
    evals = EvalClient(client, task_queue=settings.task_queue)
    handle = await evals.start(inp)
    say.print(
        f"evaluation [bold]{inp.eval_id}[/]: {len(inp.eval_set.cases)} cases, "
        f"{len(inp.variants)} variants, concurrency {inp.concurrency}"
        + (f", budget ${inp.max_cost_usd:g}" if inp.max_cost_usd is not None else ""),
        highlight=False,
    )
    names = [v.name for v in inp.variants]
    with CompareProgress(say, names, len(inp.eval_set.cases)) as bars:
        result = asyncio.ensure_future(handle.result())
        try:
            while not result.done():
                await _show(evals, inp.eval_id, bars)
                await asyncio.wait({result}, timeout=POLL_INTERVAL_S)
            await _show(evals, inp.eval_id, bars)
        finally:
            if not result.done():
                result.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await result
    return result.result()


async def _show(evals: EvalClient, eval_id: str, bars: CompareProgress) -> None:
    state = await evals.progress(eval_id)
    if state is not None:
        bars.update(state)


def _load_sample_knowledge(settings: Settings) -> None:
    """The Help Center and brand guide the support chains retrieve from."""
    from cli.demo.errors import DemoError
    from cli.demo.run import load_sample_knowledge

    try:
        load_sample_knowledge(settings)
    except DemoError as exc:
        raise CompareError(str(exc)) from exc


def _stored_scores(settings: Settings, eval_id: str) -> list[CaseScore]:
    from sqlalchemy.exc import SQLAlchemyError

    from store.engine import make_engine
    from store.evals import case_scores

    engine = make_engine(settings.effective_database_url)
    try:
        return [CaseScore.model_validate(row.score) for row in case_scores(engine, eval_id)]
    except SQLAlchemyError as exc:
        raise CompareError(f"cannot read the scores of evaluation {eval_id!r}: {exc}") from exc
    finally:
        engine.dispose()
