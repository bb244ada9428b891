"""Settings: environment overrides, .env files, and configuration errors
caught when the settings are built."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.service import TLSConfig

import core.settings
from core.settings import Settings, get_settings
from core.temporal import tls_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CHORUS_* variables from the developer's shell, and no .env of theirs."""
    import os

    for name in list(os.environ):
        if name.startswith("CHORUS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults() -> None:
    settings = Settings()
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.task_queue == "chorus"
    assert settings.simulator_base_url == "http://127.0.0.1:8400/v1"
    assert settings.temporal_ui_url == "http://127.0.0.1:8233"
    assert settings.dev_dynamic_config == {"history.transferProcessorMaxPollRPS": 1000}
    assert settings.state_dir == ROOT / ".state"
    assert settings.tls_enabled is False
    assert tls_config(settings) is False


def test_file_defaults_are_the_project_s_whatever_the_working_directory(
    clean_env: Path,
) -> None:
    # clean_env is the working directory: a folder outside the repository.
    settings = Settings()
    assert settings.chains_dir == ROOT / "chains"
    assert settings.models_file == ROOT / "chains" / "models.yaml"
    assert settings.tools_file == ROOT / "chains" / "tools" / "http.yaml"
    assert settings.state_dir == ROOT / ".state"
    assert settings.effective_database_url == f"sqlite:///{ROOT}/.state/chorus.db"
    for path in (settings.chains_dir, settings.models_file, settings.tools_file):
        assert path.exists(), path
    # Children of the dev stack read the same absolute paths.
    assert settings.to_env()["CHORUS_TOOLS_FILE"] == str(ROOT / "chains" / "tools" / "http.yaml")


def test_a_relative_path_set_by_the_user_means_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("CHORUS_TOOLS_FILE", "my-tools.yaml")
    monkeypatch.setenv("CHORUS_CHAINS_DIR", "my-chains")
    (clean_env / ".env").write_text("CHORUS_MODELS_FILE=conf/models.yaml\n")
    settings = Settings()
    assert settings.tools_file == Path("my-tools.yaml")
    assert settings.tools_file.resolve() == clean_env / "my-tools.yaml"
    assert settings.chains_dir == Path("my-chains")
    assert settings.models_file == Path("conf/models.yaml")
    # What the user did not set keeps its project default.
    assert settings.state_dir == ROOT / ".state"


def test_an_installed_package_keeps_relative_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # site-packages: no pyproject.toml and no chains/ beside the packages.
    monkeypatch.setattr(core.settings, "SOURCE_ROOT", tmp_path / "site-packages")
    settings = Settings()
    assert settings.chains_dir == Path("chains")
    assert settings.models_file == Path("chains/models.yaml")
    assert settings.tools_file == Path("chains/tools/http.yaml")
    assert settings.state_dir == Path(".state")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_TEMPORAL_ADDRESS", "temporal.internal:7300")
    monkeypatch.setenv("CHORUS_TASK_QUEUE", "chains-eu")
    monkeypatch.setenv("CHORUS_MAX_CACHED_WORKFLOWS", "50")
    monkeypatch.setenv("CHORUS_SIMULATOR_PORT", "9100")
    monkeypatch.setenv("CHORUS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("CHORUS_DEV_DYNAMIC_CONFIG", '{"limit.blobSize.warn": 1024}')
    settings = Settings()
    assert settings.temporal_host == "temporal.internal"
    assert settings.temporal_port == 7300
    assert settings.task_queue == "chains-eu"
    assert settings.max_cached_workflows == 50
    assert settings.simulator_base_url == "http://127.0.0.1:9100/v1"
    assert settings.log_level == "debug"
    assert settings.dev_dynamic_config == {"limit.blobSize.warn": 1024}


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    (clean_env / ".env").write_text("CHORUS_TASK_QUEUE=from-file\nCHORUS_API_PORT=8123\n")
    monkeypatch.setenv("CHORUS_API_PORT", "8999")
    settings = Settings()
    assert settings.task_queue == "from-file"
    assert settings.api_port == 8999


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_TEMPORAL_ADDRESS", "localhost")
    with pytest.raises(ValidationError, match="CHORUS_TEMPORAL_ADDRESS must be HOST:PORT"):
        Settings()
    monkeypatch.delenv("CHORUS_TEMPORAL_ADDRESS")
    monkeypatch.setenv("CHORUS_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()


def test_tls_key_without_certificate_is_refused(clean_env: Path) -> None:
    key = clean_env / "client.key"
    key.write_text("key")
    with pytest.raises(ValidationError) as caught:
        Settings(temporal_tls_key_path=key)
    message = str(caught.value)
    assert "CHORUS_TEMPORAL_TLS_KEY_PATH is set but CHORUS_TEMPORAL_TLS_CERT_PATH is not" in message


def test_tls_certificate_without_key_is_refused(clean_env: Path) -> None:
    cert = clean_env / "client.pem"
    cert.write_text("cert")
    with pytest.raises(ValidationError, match="CHORUS_TEMPORAL_TLS_KEY_PATH is not"):
        Settings(temporal_tls_cert_path=cert)


def test_missing_tls_file_is_refused(clean_env: Path) -> None:
    with pytest.raises(ValidationError, match="CHORUS_TEMPORAL_TLS_CA_PATH points at"):
        Settings(temporal_tls_ca_path=clean_env / "nope.pem")


def test_api_key_with_tls_disabled_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_TEMPORAL_API_KEY", "secret-key")
    monkeypatch.setenv("CHORUS_TEMPORAL_TLS", "false")
    with pytest.raises(ValidationError, match="only sent over TLS") as caught:
        Settings()
    assert "secret-key" not in str(caught.value)


def test_api_key_implies_tls_and_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_TEMPORAL_ADDRESS", "my-ns.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("CHORUS_TEMPORAL_NAMESPACE", "my-ns.a1b2c")
    monkeypatch.setenv("CHORUS_TEMPORAL_API_KEY", "secret-key")
    settings = Settings()
    assert settings.tls_enabled is True
    assert tls_config(settings) is True
    assert "secret-key" not in repr(settings)
    assert settings.temporal_api_key is not None
    assert settings.temporal_api_key.get_secret_value() == "secret-key"


def test_mutual_tls_files_are_loaded(clean_env: Path) -> None:
    cert, key, ca = clean_env / "c.pem", clean_env / "c.key", clean_env / "ca.pem"
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    ca.write_bytes(b"CA")
    settings = Settings(
        temporal_tls_cert_path=cert,
        temporal_tls_key_path=key,
        temporal_tls_ca_path=ca,
        temporal_tls_server_name="temporal.internal",
    )
    config = tls_config(settings)
    assert isinstance(config, TLSConfig)
    assert (config.client_cert, config.client_private_key, config.server_root_ca_cert) == (
        b"CERT",
        b"KEY",
        b"CA",
    )
    assert config.domain == "temporal.internal"


def test_to_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dev stack hands its settings to children through to_env()."""
    original = Settings(
        temporal_address="127.0.0.1:17233",
        task_queue="q1",
        temporal_api_key="k",
        log_format="json",
        dev_dynamic_config={"a.b": 5, "c": "x"},
        max_concurrent_activities=7,
    )
    for name, value in original.to_env().items():
        monkeypatch.setenv(name, value)
    rebuilt = Settings()
    assert rebuilt == original


def test_get_settings_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        first = get_settings()
        monkeypatch.setenv("CHORUS_TASK_QUEUE", "changed")
        assert get_settings() is first
        assert first.task_queue == "chorus"
    finally:
        get_settings.cache_clear()
