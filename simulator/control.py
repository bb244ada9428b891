"""Async client for the simulator's `/_sim` control API, for tests and demos."""

from __future__ import annotations

import asyncio
import json
import time
from types import TracebackType

import httpx

from simulator.models import CallRecord, CallsOut, Fault, ProviderLimit, Rule


def _json(payload: object) -> dict[str, object]:
    """A JSON request body with non-ASCII text as `\\uXXXX` escapes (httpx's
    `json=` sends UTF-8, which cannot carry the lone surrogate a test may
    script a model to reply with)."""
    return {
        "content": json.dumps(payload).encode("ascii"),
        "headers": {"Content-Type": "application/json"},
    }


class SimulatorControlError(RuntimeError):
    """The simulator refused a control request (the message says why)."""


class SimulatorControl:
    """Script, break and inspect a running simulator.

    `base_url` is the server's root URL (`SimulatorServer.url`); a URL ending
    in `/v1` is accepted too, so an OpenAI base URL works as well.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        root = base_url.rstrip("/")
        root = root.removesuffix("/v1")
        self.base_url = root
        self._client = httpx.AsyncClient(base_url=root, timeout=timeout_s)

    async def _send(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        response = await self._client.request(method, path, **kwargs)  # type: ignore[arg-type]
        if response.status_code >= 400:
            raise SimulatorControlError(
                f"simulator {method} {path} failed with {response.status_code}: {response.text}"
            )
        return response

    async def reset(self) -> None:
        """Forget all rules, faults and logged calls."""
        await self._send("POST", "/_sim/reset")

    async def add_rules(self, *rules: Rule) -> None:
        payload = {"rules": [r.model_dump(mode="json", exclude_none=True) for r in rules]}
        await self._send("POST", "/_sim/rules", **_json(payload))

    async def add_faults(self, *faults: Fault) -> None:
        payload = {"faults": [f.model_dump(mode="json", exclude_none=True) for f in faults]}
        await self._send("POST", "/_sim/faults", **_json(payload))

    async def set_limits(self, *limits: ProviderLimit) -> None:
        """Provider-side rate limits per model (requests and tokens per window)."""
        payload = {"limits": [limit.model_dump(mode="json", exclude_none=True) for limit in limits]}
        await self._send("POST", "/_sim/limits", **_json(payload))

    async def calls(
        self,
        request_id_prefix: str | None = None,
        model: str | None = None,
        *,
        include_pending: bool = False,
    ) -> list[CallRecord]:
        """The call log in arrival order; in-flight calls only with include_pending."""
        params: dict[str, str] = {}
        if request_id_prefix is not None:
            params["request_id_prefix"] = request_id_prefix
        if model is not None:
            params["model"] = model
        if include_pending:
            params["include_pending"] = "true"
        response = await self._send("GET", "/_sim/calls", params=params)
        return CallsOut.model_validate(response.json()).calls

    async def wait_for_calls(
        self,
        count: int = 1,
        *,
        request_id_prefix: str | None = None,
        model: str | None = None,
        include_pending: bool = False,
        timeout_s: float = 10.0,
    ) -> list[CallRecord]:
        """Poll until at least `count` matching calls are logged (e.g. one in flight
        before a test kills a worker); raises TimeoutError naming what it waited for."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = await self.calls(request_id_prefix, model, include_pending=include_pending)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"waited {timeout_s}s for {count} simulator call(s) "
                    f"(request_id_prefix={request_id_prefix!r}, model={model!r}, "
                    f"include_pending={include_pending}); saw {len(found)}"
                )
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> SimulatorControl:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
