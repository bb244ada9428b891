"""Loading a chain and checking it against the model and tool registries,
for every command that takes a chain (validate, run, demo, chains publish)."""

from __future__ import annotations

from typing import Any

import typer

from cli.console import fail, print_problems
from core.settings import Settings


def known_aliases(settings: Settings) -> set[str]:
    from activities.gateway.registry import ModelRegistry, RegistryError

    try:
        registry = ModelRegistry.from_file(
            settings.models_file, simulator_base_url=settings.simulator_base_url
        )
    except (RegistryError, OSError) as exc:
        fail(f"cannot load the model registry {settings.models_file}: {exc}")
    return set(registry.aliases)


def known_tools(settings: Settings) -> set[str]:
    from activities.tools.defaults import default_registry
    from activities.tools.errors import ToolDefinitionError

    try:
        return set(default_registry(settings).names)
    except (ToolDefinitionError, OSError) as exc:
        fail(f"cannot load the tools of {settings.tools_file}: {exc}")


def load_checked_chain(chain: str, settings: Settings) -> Any:
    """Load a chain and check it against the model and tool registries, or
    exit 1 listing its problems."""
    from runs.catalog import ChainNotFoundError, chain_path, load_chain
    from workflows.validate import ChainSpecError, check_chain

    try:
        spec = load_chain(chain, settings)
        check_chain(spec, known_aliases(settings), known_tools=known_tools(settings))
    except ChainNotFoundError as exc:
        fail(str(exc))
    except ChainSpecError as exc:
        print_problems(f"chain {chain_path(chain, settings)} has problems:", exc)
        raise typer.Exit(1) from None
    return spec
