"""`chorus payloads sweep`: remove large payloads no run has used for the
retention period (`CHORUS_PAYLOAD_RETENTION_DAYS`, default 30).

A sweep is one decision for the whole deployment, so it is a command to
schedule once (cron, a Kubernetes CronJob, a compose one-shot) rather than a
loop in every worker: N workers would scan the same table N times, and
deleting blobs would hang on whichever replicas happen to be running. A
blob's clock (`last_used_at`, a file's modification time) restarts whenever
a payload is written or read (reads at most hourly), so a blob is removed
only once no run has encoded or decoded it for the whole period.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.console import configure_logging, console, fail, load_settings

payloads_app = typer.Typer(
    help="Large payloads stored outside Temporal's history (by reference).",
    no_args_is_help=True,
)


@payloads_app.command("sweep")
def sweep(
    days: Annotated[
        float | None,
        typer.Option(
            "--older-than-days",
            min=0.0,
            help="remove blobs unused for this many days (default CHORUS_PAYLOAD_RETENTION_DAYS)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Remove payload blobs no run has written or read for the retention period.

    Keep the retention longer than any run can stay open (approval
    timeouts included) plus the namespace's retention of closed runs: a run
    whose blob is gone cannot be replayed or read."""
    from core.payload_refs import PayloadStoreError, blob_store_for, sweep_cutoff

    settings = load_settings()
    configure_logging(settings)
    retention = settings.payload_retention_days if days is None else days
    cutoff = sweep_cutoff(retention)
    try:
        if settings.payload_store == "database":
            from cli.database import database
            from store.payload_blobs import DatabaseBlobStore

            with database(settings) as engine:
                store = DatabaseBlobStore(engine)
                result = store.sweep(cutoff)
        else:
            result = blob_store_for(settings).sweep(cutoff)
    except (PayloadStoreError, OSError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "store": settings.payload_store,
                    "retention_days": retention,
                    "cutoff": cutoff.isoformat(),
                    "blobs": result.blobs,
                    "bytes": result.bytes,
                }
            )
        )
        return
    console.print(
        f"Removed {result.blobs} payload blob(s), {result.bytes} bytes, unused for "
        f"{retention:g} days, from the {settings.payload_store} payload store.",
        highlight=False,
        markup=False,
    )
