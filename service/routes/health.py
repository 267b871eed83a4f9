"""``/health``, ``/api/v1/ready`` (dependency checks) and ``/api/v1/live`` (process only)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from service.deps import ResourcesDep, SettingsDep
from service.health import HealthReport, run_checks

router = APIRouter(tags=["health"])

_CHECK_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": HealthReport,
        "description": "At least one dependency check failed",
    }
}


class Liveness(BaseModel):
    """The process answers HTTP."""

    status: Literal["alive"] = "alive"


async def _report(
    resources: ResourcesDep, settings: SettingsDep, response: Response
) -> HealthReport:
    report = await run_checks(resources, settings.health_timeout_s, settings.secrets)
    if report.status != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return report


@router.get(
    "/health",
    response_model=HealthReport,
    response_model_exclude_none=True,
    responses=_CHECK_RESPONSES,
    summary="PostgreSQL and Redis checks (200 ok, 503 error)",
)
async def health(
    resources: ResourcesDep, settings: SettingsDep, response: Response
) -> HealthReport:
    """Check PostgreSQL and Redis concurrently, each within ``AI_AGENTS_HEALTH_TIMEOUT_S``."""
    return await _report(resources, settings, response)


@router.get(
    "/api/v1/ready",
    response_model=HealthReport,
    response_model_exclude_none=True,
    responses=_CHECK_RESPONSES,
    summary="Readiness: can this instance serve traffic?",
)
async def ready(resources: ResourcesDep, settings: SettingsDep, response: Response) -> HealthReport:
    """Same checks as ``/health``: 200 when both dependencies answer, else 503."""
    return await _report(resources, settings, response)


@router.get("/api/v1/live", response_model=Liveness, summary="Liveness: the process is up")
async def live() -> Liveness:
    """Always 200 while the process serves HTTP; touches no dependency."""
    return Liveness()
