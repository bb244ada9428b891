"""What every command shares: the consoles, exiting with an error, reading
the settings, and listing a validation error's problems.

Output meant for people goes to stdout (`console`); errors and progress go
to stderr (`err_console`), so a command's stdout can be piped. Both parse
rich markup: text that comes from users, files or exceptions goes through
`escape` (or into a `Text`), so a `[/]` in a message is printed as written.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from core.settings import Settings, get_settings

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error for people and exit non-zero. `message` is plain text
    (exception and user text included), never markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        fail(f"invalid settings: {exc}")


def configure_logging(settings: Settings) -> None:
    from core.logging import configure_logging as configure

    configure(settings)


def _problem_lines(exc: BaseException) -> list[str]:
    """The individual problems of a validation error, each with its path when
    the error carries them."""
    problems = getattr(exc, "problems", None)
    if not problems:
        return [str(exc)]
    lines = []
    for problem in problems:
        path = getattr(problem, "path", None)
        message = getattr(problem, "message", None)
        lines.append(f"{path}: {message}" if path is not None and message else str(problem))
    return lines


def print_problems(title: str, exc: BaseException) -> None:
    """A plain-text title in red, then one line per problem."""
    err_console.print(f"[bold red]{escape(title)}[/]", highlight=False)
    for line in _problem_lines(exc):
        err_console.print(f"  • {line}", highlight=False, markup=False)
