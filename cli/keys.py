"""`chorus keys`: create, list and revoke API keys."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.console import console, err_console, fail, load_settings
from cli.database import database, when

keys_app = typer.Typer(
    help="Manage API keys (stored hashed in the application database).", no_args_is_help=True
)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who holds the key (the reviewer identity)")],
    role: Annotated[str, typer.Option(help="service, reviewer or admin")],
    approval_role: Annotated[
        list[str] | None,
        typer.Option(help="extra role the key may review as (repeatable), e.g. supervisor"),
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option(
            help="which runs the key sees: own (a service key: the runs it starts; a "
            "reviewer: approvals for its roles) or all; default own, all for admins"
        ),
    ] = None,
) -> None:
    """Create an API key and print it once: only its hash is stored."""
    settings = load_settings()
    from store.crud import create_api_key
    from store.engine import session_scope
    from store.errors import StoreError

    with database(settings) as engine:
        try:
            with session_scope(engine) as session:
                row, plaintext = create_api_key(
                    session,
                    name=name,
                    role=role,
                    approval_roles=approval_role or [],
                    scope=scope,
                )
        except StoreError as exc:
            fail(str(exc))
    extra = f", may also review as {', '.join(row.approval_roles)}" if row.approval_roles else ""
    if row.scope == "all":
        sees = "sees every run"
    elif row.role == "service":
        sees = "sees the runs it starts"
    else:
        sees = "sees approvals for its roles"
    err_console.print(
        f"created {escape(row.role)} key [bold]{escape(row.name)}[/]{escape(extra)} "
        f"(scope {escape(row.scope)}: {sees}). Copy it now: "
        "it will not be shown again.",
        highlight=False,
    )
    # The key alone on stdout, so `KEY=$(chorus keys create ...)` captures it.
    print(plaintext)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> None:
    """List API keys (never the keys themselves), revoked ones included."""
    settings = load_settings()
    from store.crud import list_api_keys
    from store.engine import session_scope
    from store.models import ApiKeyPublic

    with database(settings) as engine, session_scope(engine) as session:
        keys = [ApiKeyPublic.model_validate(row) for row in list_api_keys(session)]
    if as_json:
        print(json.dumps([key.model_dump(mode="json") for key in keys]))
        return
    table = Table(title="API keys", title_justify="left")
    for column in ("name", "role", "approval roles", "scope", "prefix", "created", "status"):
        table.add_column(column)
    for key in keys:
        status = (
            Text(f"revoked {when(key.revoked_at)}", style="red")
            if key.revoked_at
            else Text("active", style="green")
        )
        table.add_row(
            Text(key.name),
            Text(key.role),
            Text(", ".join(key.approval_roles)),
            Text(key.scope),
            f"{key.key_prefix}…",
            when(key.created_at),
            status,
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="name of the key to revoke")],
) -> None:
    """Revoke the active key of that name; it stops working at once."""
    settings = load_settings()
    from store.crud import revoke_api_key
    from store.engine import session_scope

    with database(settings) as engine, session_scope(engine) as session:
        revoked = revoke_api_key(session, name=name)
    if not revoked:
        fail(f"no active API key named {name!r} (`chorus keys list` shows the keys)")
    console.print(f"revoked key [bold]{escape(name)}[/]", highlight=False)
