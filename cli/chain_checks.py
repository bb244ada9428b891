"""Loading a chain and checking it against what this deployment offers (its
model registry and its tools), for every command that takes a chain
(validate, run, demo, chains publish/sync)."""

from __future__ import annotations

from typing import Any

import typer

from cli.console import fail, print_problems
from core.problems import InvalidChainSpec
from core.settings import Settings
from runs.catalog import Catalog


def known_aliases(settings: Settings) -> set[str]:
    """The model registry's aliases, the registry loaded in full (providers
    and prices resolved), so `chorus validate` also names a broken registry."""
    from activities.gateway.registry import ModelRegistry, RegistryError

    try:
        registry = ModelRegistry.from_file(
            settings.models_file, simulator_base_url=settings.simulator_base_url
        )
    except (RegistryError, OSError) as exc:
        fail(f"cannot load the model registry {settings.models_file}: {exc}")
    return set(registry.aliases)


def known_tools(settings: Settings) -> set[str]:
    from runs.catalog import CatalogError, read_tool_names

    try:
        return read_tool_names(settings)
    except CatalogError as exc:
        fail(str(exc))


def catalog(settings: Settings) -> Catalog:
    """What a chain may name here, the same catalog the API checks against."""
    return Catalog(
        aliases=frozenset(known_aliases(settings)), tools=frozenset(known_tools(settings))
    )


def load_checked_chain(chain: str, settings: Settings) -> Any:
    """Load a chain and check it against the deployment's catalog, or exit 1
    listing its problems."""
    from runs.catalog import ChainNotFoundError, chain_path, load_chain
    from runs.checks import check_chain_against
    from workflows.validate import ChainSpecError

    try:
        spec = load_chain(chain, settings)
        check_chain_against(spec, catalog(settings), what=f"chain {spec.name!r}")
    except ChainNotFoundError as exc:
        fail(str(exc))
    except ChainSpecError as exc:
        print_problems(f"chain {chain_path(chain, settings)} has problems:", exc)
        raise typer.Exit(1) from None
    except InvalidChainSpec as exc:
        print_problem_details(f"chain {chain_path(chain, settings)} has problems:", exc.details)
        raise typer.Exit(1) from None
    return spec


def print_problem_details(title: str, details: list[dict[str, str]]) -> None:
    """A refusal's problems (`path: message` each), as `print_problems` does."""
    from rich.markup import escape

    from cli.console import err_console

    err_console.print(f"[bold red]{escape(title)}[/]", highlight=False)
    for problem in details:
        err_console.print(
            f"  • {problem['path']}: {problem['message']}", highlight=False, markup=False
        )
