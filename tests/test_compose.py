"""The production-shaped stack: docker-compose.yml, the Dockerfile of the
Chorus image, and the scripts they mount from deploy/.

No Docker engine runs on the development machines, so nothing here builds an
image or starts a container. What can be checked without one is checked for
real: `docker-compose config` validates and resolves the file (CI installs
Debian's docker-compose; a missing tool fails the test rather than skipping
it), the search-attribute script runs against a real Temporal dev server, and
the PostgreSQL init script runs against the machine's PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import typer.main
import yaml
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.testing import WorkflowEnvironment

from cli.devstack.temporal_server import find_temporal_binary, search_attribute_args

if TYPE_CHECKING:
    from simulator.server import SimulatorServer

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
REGISTER_SCRIPT = DEPLOY / "register-search-attributes.sh"
POSTGRES_INIT = DEPLOY / "postgres-init" / "01-chorus.sh"
ENV_EXAMPLE = DEPLOY / "chorus.env.example"
README_SECTION = "## Production-shaped stack (docker-compose)"

REQUIRED_VARS = {
    "POSTGRES_PASSWORD": "dummy-postgres-password",
    "CHORUS_DB_PASSWORD": "dummy-chorus-db-password",
    "CHORUS_ADMIN_KEY": "dummy-admin-key-0123456789",
}
"""The values docker-compose.yml refuses to start without (`${VAR:?...}`)."""

CHORUS_SERVICES = {
    "api": "api",
    "worker": "worker",
    "simulator": "simulator",
    "migrate": "db",
    "codec-server": "codec-server",
}
"""Services running the Chorus image, and the `chorus` subcommand each runs."""

SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|(^|_)KEYS?$|API_KEY")
INTERPOLATION = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(?P<op>:?[-?])?(?P<arg>[^}]*)\}$")


# ------------------------------------------------------------------ helpers


def compose_binary() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "docker-compose is not installed: `apt-get install docker-compose` "
            "(.ci/run installs it when missing)"
        )
    return found


def run_compose(
    *args: str, env: Mapping[str, str], tmp_path: Path, env_file_text: str = ""
) -> subprocess.CompletedProcess:
    """`docker-compose -f docker-compose.yml ARGS` with exactly `env`: an env
    file of `env_file_text` (empty by default) stands in for a developer's
    .env, so the result never depends on it."""
    env_file = tmp_path / "test.env"
    env_file.write_text(env_file_text)
    return subprocess.run(
        [compose_binary(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack as docker-compose resolves it (anchors merged, variables
    interpolated with the dummy required values)."""
    tmp_path = tmp_path_factory.mktemp("compose")
    result = run_compose("config", env=REQUIRED_VARS, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """docker-compose.yml as written (YAML merge keys applied, no interpolation)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def readme_services() -> list[str]:
    text = (ROOT / "README.md").read_text()
    assert README_SECTION in text, f"README.md has no section {README_SECTION!r}"
    section = text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `([a-z][a-z0-9-]*)` \|", section, flags=re.MULTILINE)
    assert names, "the README's compose section has no table of services"
    return names


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def chorus_commands() -> set[str]:
    from cli.app import app

    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# ------------------------------------------------------- docker-compose config


def test_compose_config_quiet_passes(tmp_path: Path) -> None:
    result = run_compose("config", "-q", env=REQUIRED_VARS, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(REQUIRED_VARS))
def test_compose_refuses_to_start_without_a_required_secret(missing: str, tmp_path: Path) -> None:
    env = {k: v for k, v in REQUIRED_VARS.items() if k != missing}
    result = run_compose("config", "-q", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert missing in result.stderr, result.stderr
    assert "chorus.env.example" in result.stderr, "the message should say where to look"


def test_every_service_the_readme_names_exists(resolved: dict[str, Any]) -> None:
    named = readme_services()
    services = set(resolved["services"])
    assert set(named) <= services, f"README names services not in the file: {set(named) - services}"
    assert services <= set(named), f"services the README does not describe: {services - set(named)}"


@pytest.mark.parametrize("service", sorted(CHORUS_SERVICES))
def test_chorus_services_build_the_image_and_run_their_subcommand(
    service: str, resolved: dict[str, Any]
) -> None:
    spec = resolved["services"][service]
    assert Path(spec["build"]["context"]).resolve() == ROOT
    assert spec["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    assert "entrypoint" not in spec, "the Dockerfile's ENTRYPOINT (chorus) must apply"
    assert spec["command"][0] == CHORUS_SERVICES[service]


def test_chorus_services_share_one_image_tag(resolved: dict[str, Any]) -> None:
    images = {resolved["services"][name]["image"] for name in CHORUS_SERVICES}
    assert len(images) == 1, images


def test_worker_is_scalable(resolved: dict[str, Any]) -> None:
    worker = resolved["services"]["worker"]
    assert "container_name" not in worker, "a fixed name allows one container only"
    assert not worker.get("ports"), "a published host port allows one container only"


def test_long_running_services_have_healthchecks_and_restart(resolved: dict[str, Any]) -> None:
    one_shot = {n for n, s in resolved["services"].items() if s.get("restart") == "no"}
    assert one_shot == {"temporal-setup", "migrate"}
    for name, spec in resolved["services"].items():
        if name in one_shot:
            continue
        assert spec.get("restart") in ("unless-stopped", "always"), name
        check = spec.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name


def test_api_and_worker_wait_for_a_ready_temporal_and_database(resolved: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        deps = resolved["services"][name]["depends_on"]
        assert deps["postgresql"]["condition"] == "service_healthy", name
        assert deps["temporal"]["condition"] == "service_healthy", name
        # Search attributes registered before the first run can upsert them.
        assert deps["temporal-setup"]["condition"] == "service_completed_successfully", name
        # The schema upgraded before they check it (they refuse one behind).
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
    assert resolved["services"]["worker"]["depends_on"]["simulator"]["condition"] == (
        "service_healthy"
    )
    migrate = resolved["services"]["migrate"]
    assert migrate["depends_on"]["postgresql"]["condition"] == "service_healthy"
    database_url = resolved["services"]["api"]["environment"]["DATABASE_URL"]
    assert migrate["environment"]["DATABASE_URL"] == database_url, "upgrades the API's database"


def test_api_listens_on_all_interfaces_and_checks_readiness(resolved: dict[str, Any]) -> None:
    api = resolved["services"]["api"]
    env = api["environment"]
    assert env["CHORUS_API_HOST"] == "0.0.0.0"
    assert env["CHORUS_ADMIN_KEY"] == REQUIRED_VARS["CHORUS_ADMIN_KEY"]
    assert any(p["target"] == int(env["CHORUS_API_PORT"]) for p in api["ports"])
    assert "/readyz" in " ".join(api["healthcheck"]["test"])


def test_chorus_processes_use_the_stack_s_temporal_and_postgresql(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    password = REQUIRED_VARS["CHORUS_DB_PASSWORD"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["CHORUS_TEMPORAL_ADDRESS"] == "temporal:7233"
        assert env["DATABASE_URL"] == f"postgresql://chorus:{password}@postgresql:5432/chorus"
        assert env["CHORUS_SIMULATOR_HOST"] == "simulator"
        assert env["CHORUS_SIMULATOR_PORT"] == "8400"
    assert services["simulator"]["command"][1:3] == ["--host", "0.0.0.0"]
    assert "CHORUS_ADMIN_KEY" not in services["worker"]["environment"], "least privilege"


def test_temporal_runs_on_the_postgresql_service(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    temporal = services["temporal"]
    env = temporal["environment"]
    assert temporal["image"].startswith("temporalio/auto-setup:")
    assert re.fullmatch(r"temporalio/auto-setup:1\.(2[6-9]|[3-9]\d)\.\d+", temporal["image"])
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert env["DB_PORT"] == "5432"
    pg_env = services["postgresql"]["environment"]
    assert env["POSTGRES_USER"] == pg_env["POSTGRES_USER"]
    assert env["POSTGRES_PWD"] == pg_env["POSTGRES_PASSWORD"] == REQUIRED_VARS["POSTGRES_PASSWORD"]
    assert temporal["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert services["postgresql"]["image"].startswith("postgres:16")
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def _mounts(spec: Mapping[str, Any]) -> dict[str, str]:
    """container path -> host path of a service's bind mounts."""
    out: dict[str, str] = {}
    for volume in spec.get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def test_mounted_files_exist_and_are_wired(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    temporal = services["temporal"]
    mounts = _mounts(temporal)
    config_in_container = "/etc/temporal/" + temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert Path(mounts[config_in_container]) == DEPLOY / "temporal-dynamic-config.yaml"
    config = yaml.safe_load((DEPLOY / "temporal-dynamic-config.yaml").read_text())
    assert config["frontend.enableUpdateWorkflowExecution"] == [{"value": True}]
    assert all(isinstance(v, list) and v and "value" in v[0] for v in config.values())

    pg = _mounts(services["postgresql"])
    assert Path(pg["/docker-entrypoint-initdb.d"]) == POSTGRES_INIT.parent
    assert pg["/var/lib/postgresql/data"] == "postgresql-data", "data on a named volume"
    assert "postgresql-data" in resolved["volumes"]

    for path in (POSTGRES_INIT, REGISTER_SCRIPT):
        assert os.access(path, os.X_OK), f"{path} must be executable"
        assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0


def test_the_three_search_attributes_are_registered_by_a_service(
    resolved: dict[str, Any],
) -> None:
    setup = resolved["services"]["temporal-setup"]
    assert setup["image"].startswith("temporalio/admin-tools:")
    mounts = _mounts(setup)
    script_in_container = setup["command"][-1]
    assert Path(mounts[script_in_container]) == REGISTER_SCRIPT
    assert setup["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert setup["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    # The script registers exactly the keys the workflows upsert.
    wanted = set(search_attribute_args()[1::2])
    declared = re.search(r'^attributes="([^"]+)"', REGISTER_SCRIPT.read_text(), re.MULTILINE)
    assert declared is not None
    assert set(declared.group(1).split()) == wanted


def _python_check(spec: Mapping[str, Any]) -> str:
    test = spec["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    return test[3]


async def _run_python_check(code: str, env: Mapping[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        "python3",
        "-c",
        code,
        env={"PATH": os.environ["PATH"], **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), 30)


async def test_simulator_healthcheck_probes_a_real_simulator_endpoint(
    resolved: dict[str, Any], simulator: SimulatorServer
) -> None:
    code = _python_check(resolved["services"]["simulator"])
    assert "http://127.0.0.1:8400/" in code
    assert await _run_python_check(code.replace("http://127.0.0.1:8400", simulator.url), {}) == 0
    unknown = code.replace("http://127.0.0.1:8400/", simulator.url + "/no-such-path/")
    assert await _run_python_check(unknown, {}) != 0


async def test_worker_healthcheck_fails_when_temporal_is_unreachable(
    resolved: dict[str, Any],
) -> None:
    code = _python_check(resolved["services"]["worker"])
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    address = {"CHORUS_TEMPORAL_ADDRESS": f"127.0.0.1:{port}"}
    async with server:
        assert await _run_python_check(code, address) == 0
    server.close()
    await server.wait_closed()
    assert await _run_python_check(code, address) != 0


# ------------------------------------------------------------------ secrets


def _environments(doc: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    for name, spec in doc["services"].items():
        env = spec.get("environment") or {}
        assert isinstance(env, dict), f"{name}: write environment as a mapping"
        for key, value in env.items():
            yield name, key, value


def test_no_secret_is_written_in_the_compose_file(raw: dict[str, Any]) -> None:
    checked = 0
    for service, key, value in _environments(raw):
        text = str(value)
        if SECRET_NAME.search(key):
            checked += 1
            if value is None:
                continue  # `KEY:` with no value: passed from .env by name, if set
            match = INTERPOLATION.match(text)
            assert match, f"{service}.{key} must come from ${{...}}, not a literal"
            if match.group("op") in ("-", ":-"):
                assert match.group("arg") == "", f"{service}.{key} has a default secret"
        for userinfo in re.findall(r"://[^/@\s]*@", text):
            _, _, password = userinfo[3:-1].partition(":")
            assert INTERPOLATION.match(password) and ":?" in password, (
                f"{service}.{key}: the password in the URL must be a required ${{...}}"
            )
            checked += 1
    assert checked >= 6  # POSTGRES_PASSWORD/PWD, CHORUS_DB_PASSWORD, admin key, URLs, keys


def test_resolved_secrets_are_exactly_the_supplied_values(resolved: dict[str, Any]) -> None:
    """No service ends up with a secret the environment did not supply."""
    for service, key, value in _environments(resolved):
        if SECRET_NAME.search(key) and value not in (None, ""):
            assert value in REQUIRED_VARS.values(), f"{service}.{key}={value!r}"


def test_env_example_holds_placeholders_only() -> None:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            values[key] = value
    assert set(REQUIRED_VARS) <= set(values), "every required variable has a line"
    for key, value in values.items():
        if SECRET_NAME.search(key):
            assert value.startswith("change-me"), f"{key} must be a placeholder"
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert ".env" in gitignore, "the real env file must never be committed"


# --------------------------------------------------------------- Dockerfile


def test_dockerfile_entrypoint_is_the_chorus_console_script() -> None:
    scripts = pyproject()["project"]["scripts"]
    instructions = dockerfile_instructions()
    entrypoints = [json.loads(arg) for word, arg in instructions if word == "ENTRYPOINT"]
    assert entrypoints == [["chorus"]]
    assert "chorus" in scripts
    module, _, attr = scripts["chorus"].partition(":")
    assert (module, attr) == ("cli.app", "app")
    cmd = [json.loads(arg) for word, arg in instructions if word == "CMD"][-1]
    assert cmd[0] in chorus_commands()


@pytest.mark.parametrize("subcommand", sorted(set(CHORUS_SERVICES.values())))
def test_compose_commands_are_chorus_subcommands(subcommand: str) -> None:
    assert subcommand in chorus_commands()


def test_dockerfile_installs_every_package_without_dev_extras() -> None:
    instructions = dockerfile_instructions()
    froms = [arg for word, arg in instructions if word == "FROM"]
    args = dict(arg.partition("=")[::2] for word, arg in instructions if word == "ARG")
    assert all(f.split()[0] in ("${PYTHON_IMAGE}", "python:3.11-slim") for f in froms)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"

    runs = " ".join(arg for word, arg in instructions if word == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "a regular install of the package"
    assert "[dev]" not in runs and "-e " not in runs

    copied = {arg.split()[0].rstrip("/") for word, arg in instructions if word == "COPY"}
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    assert packages <= copied, f"packages not copied into the image: {packages - copied}"
    assert {"pyproject.toml", "README.md", "chains"} <= copied | {
        src for word, arg in instructions if word == "COPY" for src in arg.split()[:-1]
    }

    users = [arg for word, arg in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch(path, p) or fnmatch(path, p.removeprefix("**/")) for p in patterns)

    for path in (".git", ".venv", ".state", ".env", "worker/.env", ".pytest_cache", ".ruff_cache"):
        assert ignored(path), f"{path} would be sent to the Docker build"
    for path in ("pyproject.toml", "README.md", "chains", "worker", "workflows"):
        assert not ignored(path), f"{path} is needed by the build"


LINT_CONFIG = {"ruff.toml"}
"""Files inside packages that only development tools read (workflows/ruff.toml)."""


def test_installed_package_carries_its_data_files() -> None:
    """`pip install .` (not editable, as in the image) installs only .py files
    and what [tool.setuptools.package-data] lists: the simulator's default
    models file must be listed, or the simulator container cannot start."""
    package_data: dict[str, list[str]] = pyproject()["tool"]["setuptools"].get("package-data", {})
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = [pattern.rstrip("*") for pattern in include]
    missing = []
    for top in tops:
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            if path.name in LINT_CONFIG:
                continue  # read by ruff in a checkout, never at run time
            if not (path.parent / "__init__.py").is_file():
                continue  # not inside a package (e.g. deploy/): not installed
            package = ".".join(path.parent.relative_to(ROOT).parts)
            if not any(fnmatch(path.name, glob) for glob in package_data.get(package, [])):
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not declared in [tool.setuptools.package-data]: {missing}"
    assert any(fnmatch("default_models.yaml", glob) for glob in package_data.get("simulator", []))


# ------------------------------------------- the mounted scripts, run for real


async def _run_script(
    script: Path, env: Mapping[str, str], timeout_s: float = 60
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "sh",
        str(script),
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
async def bare_temporal() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh dev server that knows none of Chorus's search attributes, with
    a second namespace where ChorusCostUsd has the wrong type."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_binary(),
        dev_server_extra_args=["--namespace", "conflict"],
    )
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace="conflict",
                search_attributes={"ChorusCostUsd": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
            )
        )
        yield env
    finally:
        await env.shutdown()


def _script_env(env: WorkflowEnvironment, **extra: str) -> dict[str, str]:
    temporal_dir = str(Path(find_temporal_binary()).parent)
    return {
        "PATH": f"{temporal_dir}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        **extra,
    }


async def _custom_attributes(env: WorkflowEnvironment, namespace: str) -> dict[str, int]:
    reply = await env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(reply.custom_attributes)


async def test_register_script_registers_the_attributes_once(
    bare_temporal: WorkflowEnvironment,
) -> None:
    before = await _custom_attributes(bare_temporal, "default")
    assert "ChorusChain" not in before
    env = _script_env(bare_temporal, NAMESPACE="default")

    code, out, err = await _run_script(REGISTER_SCRIPT, env)
    assert code == 0, err
    after = await _custom_attributes(bare_temporal, "default")
    assert after["ChorusChain"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert after["ChorusStatus"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert after["ChorusCostUsd"] == IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE
    assert out.count("registered on namespace 'default'") == 3

    code, out, err = await _run_script(REGISTER_SCRIPT, env)  # a restarted stack
    assert code == 0, err
    assert out.count("already registered") == 3
    assert await _custom_attributes(bare_temporal, "default") == after


async def test_register_script_refuses_an_attribute_of_another_type(
    bare_temporal: WorkflowEnvironment,
) -> None:
    env = _script_env(bare_temporal, NAMESPACE="conflict")
    code, _, err = await _run_script(REGISTER_SCRIPT, env)
    assert code == 1
    assert "ChorusCostUsd" in err and "Keyword" in err and "Double" in err
    attrs = await _custom_attributes(bare_temporal, "conflict")
    assert attrs["ChorusCostUsd"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


async def test_register_script_gives_up_on_a_namespace_that_never_appears(
    bare_temporal: WorkflowEnvironment,
) -> None:
    env = _script_env(bare_temporal, NAMESPACE="absent", WAIT_ATTEMPTS="2", WAIT_INTERVAL_S="0")
    code, _, err = await _run_script(REGISTER_SCRIPT, env)
    assert code == 1
    assert "namespace 'absent'" in err


def _psql(sql: str) -> str:
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-Atc", sql],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def scratch_db_names() -> Iterator[tuple[str, str]]:
    if shutil.which("psql") is None:
        pytest.fail("psql is not installed (the PostgreSQL client; .ci/run expects it)")
    suffix = uuid.uuid4().hex[:10]
    role, db = f"chorus_t_{suffix}", f"chorus_t_{suffix}_db"
    yield role, db
    _psql(f'DROP DATABASE IF EXISTS "{db}"')
    _psql(f'DROP ROLE IF EXISTS "{role}"')


def test_postgres_init_script_creates_the_chorus_role_and_database(
    scratch_db_names: tuple[str, str],
) -> None:
    role, db = scratch_db_names
    env = {
        "PATH": os.environ["PATH"],
        "PGHOST": "127.0.0.1",
        "POSTGRES_USER": "postgres",
        "CHORUS_DB_USER": role,
        "CHORUS_DB_NAME": db,
        "CHORUS_DB_PASSWORD": 'it\'s "quoted"; DROP ROLE postgres; --',
    }
    result = subprocess.run(
        ["sh", str(POSTGRES_INIT)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    row = _psql(
        f"SELECT rolcanlogin, rolsuper, rolcreaterole, rolpassword LIKE 'SCRAM-SHA-256$%' "
        f"FROM pg_authid WHERE rolname = '{role}'"
    )
    assert row == "t|f|f|t", "a plain login role with a hashed password"
    assert _psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'") == role
    assert _psql("SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'") == "1"


def test_postgres_init_script_requires_the_password() -> None:
    env = {"PATH": os.environ["PATH"], "PGHOST": "127.0.0.1", "POSTGRES_USER": "postgres"}
    result = subprocess.run(
        ["sh", str(POSTGRES_INIT)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "CHORUS_DB_PASSWORD" in result.stderr
