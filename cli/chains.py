"""`chorus chains`: publish and list chain versions in the application database."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.chain_checks import known_aliases, load_checked_chain
from cli.console import console, fail, load_settings
from cli.database import database, when

chains_app = typer.Typer(
    help="Publish and list chain versions in the application database.", no_args_is_help=True
)


@chains_app.command("publish")
def chains_publish(
    chain: Annotated[str, typer.Argument(help="chain name (in CHORUS_CHAINS_DIR) or YAML path")],
) -> None:
    """Validate a chain against the model registry and publish it as a new
    version (publishing an unchanged spec keeps the latest version)."""
    settings = load_settings()
    spec = load_checked_chain(chain, settings)
    from store.crud import publish_chain
    from store.engine import session_scope
    from store.errors import StoreError

    with database(settings) as engine:
        try:
            with session_scope(engine) as session:
                result = publish_chain(session, spec=spec, created_by="cli")
        except StoreError as exc:
            fail(str(exc))
    row = result.chain_version
    if result.created:
        console.print(
            f"published chain [bold]{escape(row.name)}[/] v{row.version}", highlight=False
        )
    else:
        console.print(
            f"chain [bold]{escape(row.name)}[/] unchanged: v{row.version} has the same spec",
            highlight=False,
        )


@chains_app.command("sync")
def chains_sync() -> None:
    """Publish every chain in CHORUS_CHAINS_DIR whose spec changed (all or nothing)."""
    settings = load_settings()
    aliases = known_aliases(settings)
    from runs.catalog import sync_chain_dir
    from store.engine import session_scope
    from store.errors import StoreError

    with database(settings) as engine:
        try:
            with session_scope(engine) as session:
                rows = sync_chain_dir(
                    session, chains_dir=settings.chains_dir, known_aliases=aliases
                )
        except StoreError as exc:
            fail(str(exc))
    for row in rows:
        console.print(f"{row.name} v{row.version}", highlight=False, markup=False)


@chains_app.command("list")
def chains_list(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> None:
    """List the published chains, each at its latest version."""
    settings = load_settings()
    from store.crud import list_chains
    from store.engine import session_scope

    with database(settings) as engine, session_scope(engine) as session:
        rows = list_chains(session)
    if as_json:
        from store.models import ChainVersionPublic

        items = [
            ChainVersionPublic.model_validate(row).model_dump(mode="json", exclude={"spec"})
            for row in rows
        ]
        print(json.dumps(items))
        return
    if not rows:
        console.print(
            "no chains published yet: `chorus chains sync` publishes the chains directory"
        )
        return
    table = Table(title="chains (latest versions)", title_justify="left")
    for column in ("name", "version", "description", "published", "by"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            Text(row.name),
            f"v{row.version}",
            Text(row.description or ""),
            when(row.created_at),
            Text(row.created_by),
        )
    console.print(table)
