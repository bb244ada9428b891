"""Find and load the chain specs a user names on the command line.

A chain is named either by a path to a YAML file or by a bare name that
resolves to CHAINS_DIR/NAME.yaml. Loading parses and validates the spec's
shape; checking model aliases against the registry is the caller's job
(`workflows.validate.check_chain`), since it needs the registry.
"""

from __future__ import annotations

from pathlib import Path

from worker.settings import Settings
from workflows.spec import ChainSpec

CHAIN_SUFFIXES = (".yaml", ".yml")


class ChainNotFoundError(LookupError):
    """No chain file matches the name or path the user gave."""


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
