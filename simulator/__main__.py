"""`python -m simulator --host H --port P [--config PATH]`: the dev stack's entry."""

from __future__ import annotations

import argparse

from simulator.server import DEFAULT_HOST, DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Run the Chorus model SIMULATOR (simulated OpenAI/Anthropic APIs).",
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--config", default=None, help="models YAML (default: shipped models)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.config, log_level=args.log_level)


if __name__ == "__main__":
    main()
