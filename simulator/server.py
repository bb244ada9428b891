"""Running the simulator: in a background thread (tests) or in the foreground (CLI).

Both bind the socket themselves (worker/uvicorn_thread.py), so port 0 picks a
free port and the caller learns which one before any request is made.
"""

from __future__ import annotations

from pathlib import Path

import structlog
import uvicorn

from core.uvicorn_thread import BackgroundServer, bind_socket, client_host, run_until_stopped
from simulator.app import create_app
from simulator.models import SimulatorConfig, default_simulator_config, load_simulator_config

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8790

log = structlog.get_logger(__name__)


class SimulatorStartError(RuntimeError):
    """The simulator's server did not come up."""


class SimulatorServer(BackgroundServer):
    """The simulator on a background thread; `port=0` picks a free port.

    Use as `with SimulatorServer() as sim:` or `async with ...`, or call
    `start()` / `stop()`. `openai_base_url` is what an OpenAI client takes;
    Anthropic clients take `url` (they add `/v1/messages` themselves).
    """

    what = "the simulator"
    start_error = SimulatorStartError
    thread_name = "chorus-simulator"

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = DEFAULT_HOST, port: int = 0
    ) -> None:
        self.config = config or default_simulator_config()
        self.app = create_app(self.config)
        super().__init__(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_keep_alive=30,
            ),
            host=host,
            port=port,
        )

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def _on_started(self) -> None:
        log.warning("chorus model SIMULATOR listening", url=self.url)


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config_path: str | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Run the simulator in the foreground until interrupted (CLI, dev stack)."""
    config = load_simulator_config(Path(config_path)) if config_path else default_simulator_config()
    sock = bind_socket(
        host,
        port,
        what=SimulatorServer.what,
        error=SimulatorStartError,
        backlog=SimulatorServer.backlog,
    )
    actual_port = sock.getsockname()[1]
    log.warning(
        "chorus model SIMULATOR listening: replies are simulated, not from a real provider",
        url=f"http://{client_host(host)}:{actual_port}",
        openai_base_url=f"http://{client_host(host)}:{actual_port}/v1",
        config=config_path or "default_models.yaml",
    )
    run_until_stopped(
        uvicorn.Config(create_app(config), log_level=log_level, access_log=False, lifespan="on"),
        sock,
    )
