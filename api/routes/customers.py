"""Customer profiles."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.deps import ApiKey, PolicyDep, StoreDep
from api.schemas import ErrorResponse, ProfileOut
from models.profile import decode_profile, render

router = APIRouter(prefix="/v1/customers", tags=["customers"], dependencies=[ApiKey])


@router.get(
    "/{customer_id:path}",  # ids are the client's: they may hold slashes
    response_model=ProfileOut,
    responses={
        401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
        404: {"model": ErrorResponse, "description": "No profile for this id"},
    },
)
async def get_customer(customer_id: str, store: StoreDep, policy: PolicyDep) -> dict[str, Any]:
    """The customer's profile as of now (decayed scores are computed at read time)."""
    blob = await store.profile_blob(customer_id)
    if blob is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no profile for customer {customer_id!r}: no event for this id has been processed",
        )
    return render(decode_profile(blob), time.time_ns() // 1_000_000, policy)
