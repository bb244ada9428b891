"""The activity of the raw-Temporal baseline: one bare httpx call."""

from __future__ import annotations

import httpx
from temporalio import activity

from bench.raw_workflow import RawCallInput


class RawActivities:
    def __init__(self) -> None:
        self._http = httpx.AsyncClient(timeout=30)

    @activity.defn(name="bench.raw_call")
    async def raw_call(self, req: RawCallInput) -> str:
        response = await self._http.post(
            f"{req.base_url}/chat/completions",
            json={
                "model": req.model,
                "messages": [{"role": "user", "content": req.prompt}],
                "max_tokens": 64,
            },
        )
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    async def aclose(self) -> None:
        await self._http.aclose()
