"""The evaluation client: the one way into evaluations (`chorus compare`, the
API, the tests), as `RunClient` is for chain runs.

`EvalClient.prepare` refuses bad input before anything starts, with a
message naming what is wrong: a variant the deployment cannot run (unknown
model alias or tool), a case whose input a variant's `input_schema` refuses,
a bad concurrency or budget, an unknown judge alias. `start` starts the
EvalWorkflow under the evaluation's id (one id, one evaluation, forever);
`progress` asks a running one where it stands; `result` waits for the report.
Refusals are `core.problems` exceptions (HTTP-free), like the run client's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.evals.types import MAX_CONCURRENCY, EvalInput, EvalProgress, EvalVariant
from core.chain_spec import ChainSpec, iter_aliases
from core.evals.results import EvalReport
from core.evals.spec import EvalSet, contact_problems
from core.names import EVAL_PROGRESS_QUERY, EVAL_WORKFLOW_NAME
from core.problems import ApiProblem, Conflict, InvalidChainSpec, NotFound, Unprocessable
from runs.catalog import Catalog
from runs.checks import check_chain_against, check_run
from runs.client import RPC_TIMEOUT, temporal_problem

__all__ = [
    "MAX_CONCURRENCY",
    "EvalClient",
    "EvalConflict",
    "EvalInput",
    "EvalNotFound",
    "EvalProgress",
    "new_eval_id",
    "prepare_evaluation",
    "simulated_aliases",
]
"""The payloads are re-exported: the API reaches evaluations through this
module, never `activities` directly."""

QUERY_TIMEOUT = timedelta(seconds=5)
SIMULATOR_PROVIDER = "simulator"


class EvalNotFound(NotFound):
    """No evaluation by that id."""


class EvalConflict(Conflict):
    """The evaluation id names another evaluation already."""


def new_eval_id() -> str:
    return f"eval-{uuid.uuid4().hex[:12]}"


def simulated_aliases(models_file: Path) -> set[str]:
    """Aliases the model registry serves from the simulator: a report made on
    any of them says so in its title."""
    try:
        data = yaml.safe_load(models_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        return set()
    return {
        str(alias)
        for alias, entry in models.items()
        if isinstance(entry, dict) and entry.get("provider", SIMULATOR_PROVIDER) == "simulator"
    }


def prepare_evaluation(
    eval_set: EvalSet,
    variants: Sequence[ChainSpec],
    *,
    eval_id: str | None = None,
    concurrency: int = 4,
    max_cost_usd: float | None = None,
    judge_alias: str | None = None,
    simulator_aliases: set[str] | None = None,
    created_by: str | None = None,
    cases_per_run: int | None = None,
    catalog: Catalog | None = None,
) -> EvalInput:
    """The EvalWorkflow's input, every variant and every case checked
    (against `catalog` when given: what this deployment can run):
    raises Unprocessable (InvalidChainSpec, InvalidInput) naming what is
    wrong before anything starts."""
    if not variants:
        raise Unprocessable("name at least one variant to compare", code="no_variants")
    names = [spec.name for spec in variants]
    if len(set(names)) != len(names):
        raise Unprocessable(
            f"variants must be distinct chains: {', '.join(names)}", code="duplicate_variants"
        )
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise Unprocessable(
            f"concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency}",
            code="bad_concurrency",
        )
    if max_cost_usd is not None and not max_cost_usd > 0:
        raise Unprocessable(
            f"max_cost_usd must be a positive amount of USD, not {max_cost_usd}",
            code="bad_budget",
        )
    contacts = contact_problems(eval_set)
    if contacts:
        raise Unprocessable(f"eval set {eval_set.name!r}: {contacts[0]}", code="bad_eval_set")
    if catalog is not None:
        _check(eval_set, variants, judge_alias, catalog)
    aliases = {alias for spec in variants for alias in iter_aliases(spec.steps)}
    if judge_alias is not None:
        aliases.add(judge_alias)
    fields: dict[str, Any] = {}
    if cases_per_run is not None:
        fields["cases_per_run"] = cases_per_run
    try:
        return EvalInput(
            eval_id=eval_id or new_eval_id(),
            eval_set=eval_set,
            variants=[EvalVariant(name=spec.name, spec=spec) for spec in variants],
            concurrency=concurrency,
            max_cost_usd=max_cost_usd,
            judge_alias=judge_alias,
            simulated=bool(aliases & (simulator_aliases or set())),
            created_by=created_by,
            **fields,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "evaluation"
        raise Unprocessable(f"{where}: {first['msg']}", code="bad_evaluation") from None


def _check(
    eval_set: EvalSet, variants: Sequence[ChainSpec], judge: str | None, catalog: Catalog
) -> None:
    if judge is not None and judge not in catalog.aliases:
        raise Unprocessable(
            f"judge alias {judge!r} is not in this deployment's model registry "
            f"(known: {', '.join(sorted(catalog.aliases))})",
            code="unknown_judge_alias",
        )
    for spec in variants:
        check_chain_against(spec, catalog, what=f"variant {spec.name!r}")
        for case in eval_set.cases:
            try:
                check_run(spec, case.input, catalog)
            except InvalidChainSpec:
                raise
            except ApiProblem as exc:
                raise type(exc)(
                    f"case {case.id!r} of eval set {eval_set.name!r} is not a valid input "
                    f"for variant {spec.name!r}: {exc}",
                    details=exc.details,
                    code=exc.code,
                ) from None


class EvalClient:
    """Checks, starts and reads evaluations on one task queue."""

    def __init__(self, client: Client, *, task_queue: str, catalog: Catalog | None = None):
        self.client = client
        self.task_queue = task_queue
        self.catalog = catalog

    def prepare(self, eval_set: EvalSet, variants: Sequence[ChainSpec], **kwargs: Any) -> EvalInput:
        """`prepare_evaluation` against this client's catalog."""
        return prepare_evaluation(eval_set, variants, catalog=self.catalog, **kwargs)

    async def start(self, inp: EvalInput) -> WorkflowHandle[Any, EvalReport]:
        """Start the evaluation; a second start of the same id with the same
        eval set and variants adopts it, any other is an EvalConflict."""
        try:
            return await self.client.start_workflow(
                EVAL_WORKFLOW_NAME,
                inp,
                id=inp.eval_id,
                task_queue=self.task_queue,
                result_type=EvalReport,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                static_summary=(
                    f"evaluation of {', '.join(v.name for v in inp.variants)} "
                    f"on {inp.eval_set.name}"
                ),
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            raise EvalConflict(
                f"an evaluation with id {inp.eval_id!r} already exists; pick a new id",
                details={"eval_id": inp.eval_id},
                code="eval_exists",
            ) from None
        except RPCError as exc:
            raise temporal_problem(exc, f"starting evaluation {inp.eval_id!r}") from exc

    def handle(self, eval_id: str) -> WorkflowHandle[Any, EvalReport]:
        return self.client.get_workflow_handle(eval_id, result_type=EvalReport)

    async def is_running(self, eval_id: str) -> bool | None:
        """True while running, False once closed, None when Temporal has no
        evaluation by that id."""
        try:
            description = await self.client.get_workflow_handle(eval_id).describe(
                rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise temporal_problem(exc, f"describing evaluation {eval_id!r}") from exc
        if description.workflow_type != EVAL_WORKFLOW_NAME:
            return None
        return description.status in (
            WorkflowExecutionStatus.RUNNING,
            WorkflowExecutionStatus.CONTINUED_AS_NEW,
        )

    async def progress(self, eval_id: str) -> EvalProgress | None:
        """A running evaluation's progress; None when no worker answers now
        (down, or the evaluation is between two runs)."""
        try:
            return await self.handle(eval_id).query(  # type: ignore[no-any-return]
                EVAL_PROGRESS_QUERY, result_type=EvalProgress, rpc_timeout=QUERY_TIMEOUT
            )
        except (WorkflowQueryFailedError, WorkflowQueryRejectedError):
            return None
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise EvalNotFound(
                    f"no evaluation with id {eval_id!r}", details={"eval_id": eval_id}
                ) from None
            return None

    async def result(self, eval_id: str) -> EvalReport:
        """Wait for the evaluation's report (following its continued runs)."""
        return await self.handle(eval_id).result()
