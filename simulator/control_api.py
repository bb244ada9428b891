"""`/_sim` control endpoints: script replies, inject faults, read the call log.

They live on the same server as the provider endpoints so a test needs one
URL; the `/_sim` prefix keeps them out of any real provider's path space.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from simulator.models import CallsOut, FaultsIn, LimitsIn, RulesIn
from simulator.pipeline import simulator_config, simulator_state

router = APIRouter(prefix="/_sim", tags=["simulator control"])


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    """Readiness probe for the dev stack; names itself so nobody mistakes it for a provider."""
    return {"simulator": "chorus-simulator", "models": sorted(simulator_config(request).models)}


@router.post("/reset")
async def reset(request: Request) -> dict[str, bool]:
    simulator_state(request).reset()
    return {"ok": True}


@router.post("/rules")
async def add_rules(request: Request, body: RulesIn) -> dict[str, int]:
    simulator_state(request).add_rules(body.rules)
    return {"added": len(body.rules)}


@router.post("/faults")
async def add_faults(request: Request, body: FaultsIn) -> dict[str, int]:
    simulator_state(request).add_faults(body.faults)
    return {"added": len(body.faults)}


@router.post("/limits")
async def set_limits(request: Request, body: LimitsIn) -> dict[str, int]:
    """Provider-side rate limits per model (429 with Retry-After when over), until reset."""
    simulator_state(request).set_limits(body.limits)
    return {"set": len(body.limits)}


@router.get("/calls")
async def calls(
    request: Request,
    request_id_prefix: str | None = None,
    model: str | None = None,
    include_pending: bool = False,
) -> CallsOut:
    """The call log in arrival order; calls still in flight only with include_pending."""
    found = simulator_state(request).calls(
        request_id_prefix=request_id_prefix, model=model, include_pending=include_pending
    )
    return CallsOut(calls=found)
