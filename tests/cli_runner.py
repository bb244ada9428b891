"""Running the `chorus` CLI in-process for tests (typer's CliRunner)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from cli.app import app
from core.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]


def invoke(args: list[str], env: dict[str, str]) -> Result:
    """`chorus <args>` with `env`; settings are read afresh from `env` (and
    the cache is cleared again after, so no test sees another's settings)."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, env=env)
    finally:
        get_settings.cache_clear()


def database_env(database_url: str, state_dir: Path) -> dict[str, str]:
    """The environment of a CLI command over the application database."""
    return {
        "CHORUS_DATABASE_URL": database_url,
        "CHORUS_STATE_DIR": str(state_dir),
        "CHORUS_CHAINS_DIR": str(ROOT / "chains"),
        "CHORUS_MODELS_FILE": str(ROOT / "chains" / "models.yaml"),
        "CHORUS_LOG_FORMAT": "json",
    }
