"""/healthz (the process answers) and /readyz (Temporal and the database do too)."""

from __future__ import annotations

from fastapi import APIRouter

from api import health
from api.bodies import CheckedJsonRoute
from api.deps import StateDep
from api.errors import error_responses, http_error
from api.schemas import Health, Readiness

router = APIRouter(tags=["health"], route_class=CheckedJsonRoute)


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=error_responses(503),
    summary="Readiness: Temporal and the database answer",
)
async def readyz(state: StateDep) -> Readiness:
    checks = await health.readiness(state)
    down = [name for name, check in checks.items() if not check.ok]
    if down:
        reasons = "; ".join(f"{name}: {checks[name].error}" for name in down)
        raise http_error(
            503,
            "not_ready",
            f"not ready: {' and '.join(down)} unavailable ({reasons})",
            details={name: check.model_dump() for name, check in checks.items()},
        )
    return Readiness(checks=checks)
