"""What a deployment offers a chain: its model aliases, its tools and its
chain files.

Every way into a run (the API, the CLI, the demo) checks a chain against the
same `Catalog`, so a misspelt alias or tool is refused before anything starts
rather than failing the run halfway. A chain is named either by a path to a
YAML file or by a bare name that resolves to CHAINS_DIR/NAME.yaml.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlmodel import Session

from core.chain_spec import ChainSpec
from core.input_limits import DEFAULT_LIMITS, InputLimits
from core.settings import Settings
from store import ChainVersion, publish_chain_version

CHAIN_SUFFIXES = (".yaml", ".yml")


class ChainNotFoundError(LookupError):
    """No chain file matches the name or path the user gave."""


class ChainFileError(ValueError):
    """A chain file in the chains directory is unreadable or invalid; nothing
    from that directory was published."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"chain file {path}: {reason}")


class CatalogError(ValueError):
    """The model registry or the tools file cannot be read: nothing can be
    checked against them, so nothing starts."""


@dataclass(frozen=True)
class Catalog:
    """The names a chain may use: model aliases and tools."""

    aliases: frozenset[str]
    tools: frozenset[str]
    limits: InputLimits = DEFAULT_LIMITS
    """What a run's input and chain may be (`core.input_limits`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        """The aliases of the model registry file and the tools a worker with
        these settings hosts. Raises CatalogError naming the file at fault."""
        return cls(
            aliases=frozenset(read_model_aliases(settings.models_file)),
            tools=frozenset(read_tool_names(settings)),
            limits=settings.input_limits,
        )


def read_model_aliases(models_file: Path) -> set[str]:
    """The aliases of the model registry file (`models:` keys).

    Only the names: resolving providers and prices is the worker's business.
    """
    try:
        data = yaml.safe_load(models_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"cannot read the model registry {models_file}: {exc}") from exc
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise CatalogError(f"model registry {models_file} has no `models:` mapping")
    return {str(alias) for alias in models}


def read_tool_names(settings: Settings) -> set[str]:
    """The names of the tools a worker with these settings hosts (the builtin
    tools and those of the HTTP tools file)."""
    from activities.tools.defaults import tool_names
    from activities.tools.errors import ToolDefinitionError

    try:
        return set(tool_names(settings))
    except (ToolDefinitionError, OSError) as exc:
        raise CatalogError(f"cannot load the tools of {settings.tools_file}: {exc}") from exc


def available_chains(settings: Settings) -> list[str]:
    """Names of the chains in CHAINS_DIR (the model registry file excluded)."""
    directory = settings.chains_dir
    if not directory.is_dir():
        return []
    models_file = settings.models_file.resolve()
    names = {
        path.stem
        for path in directory.iterdir()
        if path.suffix in CHAIN_SUFFIXES
        and path.is_file()
        and path.resolve() != models_file
        and path.stem != "models"
    }
    return sorted(names)


def chain_path(name_or_path: str | Path, settings: Settings) -> Path:
    """The file a chain name or path refers to.

    Anything that looks like a path (has a separator or a YAML suffix) must
    exist as given; a bare name is looked up in CHAINS_DIR.
    """
    text = str(name_or_path)
    given = Path(text)
    looks_like_path = given.suffix in CHAIN_SUFFIXES or "/" in text or "\\" in text
    if looks_like_path:
        if given.is_file():
            return given
        raise ChainNotFoundError(f"chain file {text!r} does not exist")
    for suffix in CHAIN_SUFFIXES:
        candidate = settings.chains_dir / f"{text}{suffix}"
        if candidate.is_file():
            return candidate
    names = available_chains(settings)
    listing = ", ".join(names) if names else "none"
    raise ChainNotFoundError(
        f"no chain named {text!r} in {settings.chains_dir}/ (available: {listing}); "
        "pass a chain name or a path to a YAML file"
    )


def load_chain(name_or_path: str | Path, settings: Settings) -> ChainSpec:
    """Read and parse a chain. Raises ChainNotFoundError, or the validator's
    ChainSpecError naming the file and what is wrong in it."""
    from workflows.validate import parse_chain_yaml

    path = chain_path(name_or_path, settings)
    return parse_chain_yaml(path.read_text(encoding="utf-8"))


def chain_files(chains_dir: Path) -> list[Path]:
    """The chain specs of a directory: its YAML files but the model registry."""
    return sorted(
        path
        for path in chains_dir.iterdir()
        if path.is_file() and path.suffix in (".yaml", ".yml") and path.stem != "models"
    )


def sync_chain_dir(
    session: Session,
    *,
    chains_dir: Path,
    known_aliases: Collection[str],
    known_tools: Collection[str] | None = None,
    created_by: str = "chains-dir",
) -> list[ChainVersion]:
    """Publish every chain file of a directory (models.yaml aside), so the
    shipped chains are there in a fresh database; unchanged files publish
    nothing new. Every file is validated first: one bad file raises
    ChainFileError and nothing is published."""
    from workflows.validate import ChainSpecError, load_chain_yaml

    if not chains_dir.is_dir():
        raise ChainFileError(chains_dir, "is not a directory")
    specs: list[ChainSpec] = []
    for path in chain_files(chains_dir):
        try:
            text = path.read_text(encoding="utf-8")
            specs.append(load_chain_yaml(text, known_aliases, known_tools=known_tools))
        except OSError as exc:
            raise ChainFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
        except ChainSpecError as exc:
            raise ChainFileError(path, str(exc)) from exc
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ChainFileError(
            chains_dir, f"several files define the chain(s) {', '.join(duplicates)}"
        )
    return [publish_chain_version(session, spec=spec, created_by=created_by) for spec in specs]
