"""The one assembly of Chorus's Temporal pieces: data converter, sandbox
(with its passthrough modules), workflows, and the activities a worker hosts.

The worker, the tests, the benchmarks and the Replayer all take it as a
Temporal plugin, so what replays a recorded history is exactly what ran it
(sdk-python's `contrib/openai_agents` plugin does the same).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from temporalio.converter import DataConverter
from temporalio.plugin import SimplePlugin
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from core.converter import converter_for, data_converter
from core.encryption import Keyring
from core.settings import Settings, get_settings
from workflows.agent import AgentWorkflow
from workflows.chain import ChainWorkflow
from workflows.evals.workflow import EvalWorkflow

WORKFLOWS: Sequence[type] = (ChainWorkflow, AgentWorkflow, EvalWorkflow)

PASSTHROUGH_MODULES = (
    # Deterministic modules shared by every run instead of being re-imported
    # into each workflow's sandbox (the sdk README's "Sandbox Performance").
    "jinja2",
    "markupsafe",
    "pydantic",
    "pydantic_core",
    "activities.gateway.types",
    "core.chain_spec",
    "core.chain_errors",
    "core.names",
    "core.json_formats",
    "core.statuses",
    "workflows.types",
    "workflows.activity_options",
    "workflows.budget",
    "workflows.templating",
    "workflows.patches",
    "workflows.template_sandbox",
    "core.search_attributes",
    # Evaluations (EvalWorkflow): eval sets and results; `regex` is what
    # compiles a case's patterns.
    "core.evals.spec",
    "core.evals.results",
    "activities.evals.types",
    "regex",
    # Guards validate JSON schemas inside workflows: jsonschema and what it
    # imports (re-importing them per run costs ~0.3 s of worker CPU).
    "workflows.guards",
    "workflows.pii",
    "workflows.citations",
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "rpds",
    "attr",
    "attrs",
    "idna",
)


def sandbox_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


def workflow_runner(sandboxed: bool) -> WorkflowRunner:
    """The sandbox (`Settings.workflow_sandbox`, default), or none: workflow
    code then runs as plain Python, kept deterministic by the static checks
    of workflows/ruff.toml and the import contracts, and by replay tests."""
    return sandbox_runner() if sandboxed else UnsandboxedWorkflowRunner()


class ChorusPlugin(SimplePlugin):
    """Chorus's workflows in the deterministic sandbox, payloads through the
    pydantic data converter, and (on a worker) the given activities.

    A worker's data converter is its client's (`core.temporal.connect`);
    `converter` is what a Replayer or a client given this plugin uses
    (default: no keys, so an encrypted payload is refused by name)."""

    def __init__(
        self,
        activities: Sequence[Callable[..., Any]] = (),
        *,
        converter: DataConverter | None = None,
        sandboxed: bool = True,
    ) -> None:
        super().__init__(
            "chorus.ChorusPlugin",
            data_converter=converter or converter_for(Keyring()),
            workflows=list(WORKFLOWS),
            workflow_runner=workflow_runner(sandboxed),
            activities=list(activities) or None,
        )


def chorus_replayer(settings: Settings | None = None) -> Replayer:
    """A Replayer with exactly what a worker runs (recorded-history tests),
    decrypting with the keys of `settings` (default: the process's)."""
    # The database payload store (for payloads stored by reference) registers
    # itself when imported; imported here, not at the top, because workflow
    # sandboxes re-import modules that import this one (tests' probes).
    import store.payload_blobs  # noqa: F401

    converter = data_converter(settings or get_settings())
    return Replayer(workflows=[], plugins=[ChorusPlugin(converter=converter)])
