"""Liveness: answers while the process serves, whatever the target database is doing."""

from fastapi import APIRouter

from pgkeep.http.schemas import HealthResponse

router = APIRouter()


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    return HealthResponse()
