"""`chorus`: the command line of Chorus.

    chorus dev                    Temporal dev server + simulator + worker + API, until Ctrl-C
    chorus worker                 a worker against CHORUS_TEMPORAL_ADDRESS
    chorus api                    the HTTP API on CHORUS_API_HOST:CHORUS_API_PORT
    chorus simulator              the model simulator in the foreground
    chorus validate CHAIN         check a chain spec against the model registry
    chorus run CHAIN --input JSON run a chain and watch its steps
    chorus demo                   the flagship chain on five sample support tickets
    chorus compare SET --variants a,b   chain variants side by side on an eval set
    chorus ingest COLL PATH...    add documents to a knowledge collection
    chorus search COLL QUESTION   the passages a chain's retrieve step would be given
    chorus db upgrade             bring the application database to the current schema
    chorus codec-server           decode encrypted payloads for the Temporal UI and CLI

Every command reads its configuration from `CHORUS_*` environment variables
(see core/settings.py). Output meant for people goes to stdout through rich;
logs go to stderr, so `chorus demo --json | jq` stays clean.

Each command lives in its own module; this one only builds the typer root
and registers them, in the order `chorus --help` lists them.
"""

from __future__ import annotations

import sys

import typer

from cli.chains import chains_app
from cli.codec_server_command import codec_server
from cli.compare.command import compare
from cli.db_command import db_app
from cli.demo_command import demo
from cli.ingest import ingest
from cli.keys import keys_app
from cli.payloads_command import payloads_app
from cli.run_command import run, validate
from cli.search import search
from cli.stack_commands import api, dev, simulator, worker

app = typer.Typer(
    name="chorus",
    help="Chorus: durable multi-model LLM chains on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command in (dev, worker, simulator, api, validate, run, demo):
    app.command()(command)
app.command()(compare)
app.add_typer(keys_app, name="keys")
app.add_typer(chains_app, name="chains")
app.add_typer(db_app, name="db")
app.add_typer(payloads_app, name="payloads")
app.command()(ingest)
app.command()(search)
app.command(name="codec-server")(codec_server)


def main() -> None:
    """Entry point for `python -m cli`."""
    app(prog_name="chorus")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
