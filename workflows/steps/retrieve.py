"""Retrieve steps: passages of a knowledge collection for a rendered query.

Since `MIN_SCORE_PATCH`, a step asks the activity to drop passages below its
`min_score` (or the store's default) and its output says when nothing was
left (`nothing_relevant`). Runs started before keep getting every passage:
the activity applies no threshold unless asked.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.retrieval.types import RetrieveInput, RetrieveResult
    from core.chain_errors import ChainErrorType
    from core.chain_spec import RetrieveStep
    from core.names import RETRIEVE
    from workflows.failures import ChainFailure, describe_activity_error
    from workflows.patches import applies
    from workflows.run_context import RunContext, Variables
    from workflows.types import StepRecord


MIN_SCORE_PATCH = "retrieve-min-score"


class RetrieveRunner:
    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx

    async def run(self, step: RetrieveStep, variables: Variables, record: StepRecord) -> None:
        query = self._ctx.render(step.query, variables, f"{step.name}.query")
        try:
            result = await workflow.execute_activity(
                RETRIEVE,
                RetrieveInput(
                    collection=step.collection,
                    query=query,
                    top_k=step.top_k,
                    step=step.name,
                    min_score=step.min_score,
                    apply_min_score=applies(MIN_SCORE_PATCH),
                ),
                result_type=RetrieveResult,
                start_to_close_timeout=self._ctx.options.retrieve_timeout,
                summary=f"{step.name} · retrieve from {step.collection}",
            )
        except ActivityError as err:
            raise ChainFailure(
                ChainErrorType.RETRIEVAL_FAILED,
                f"step {step.name}: {describe_activity_error(err)}",
            ) from None
        record.output = result.model_dump(mode="json")
