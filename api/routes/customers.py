"""Customer profiles."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.deps import AdminKey, ApiKey, PolicyDep, StoreDep
from api.schemas import Erased, ErrorResponse, ProfileOut
from models.profile import decode_profile, render

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get(
    "/{customer_id:path}",
    dependencies=[ApiKey],  # ids are the client's: they may hold slashes
    response_model=ProfileOut,
    responses={
        401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
        404: {"model": ErrorResponse, "description": "No profile for this id"},
    },
)
async def get_customer(customer_id: str, store: StoreDep, policy: PolicyDep) -> dict[str, Any]:
    """The customer's profile as of now (decayed scores are computed at read time). Any of
    the customer's ids works: the answer names the canonical id it is for."""
    _, blob = await store.resolve(customer_id)
    if blob is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no profile for customer {customer_id!r}: no event for this id has been processed",
        )
    doc = render(decode_profile(blob), time.time_ns() // 1_000_000, policy)
    doc["requested_id"] = customer_id
    return doc


@router.delete(
    "/{customer_id:path}",
    dependencies=[AdminKey],
    response_model=Erased,
    responses={401: {"model": ErrorResponse, "description": "Missing or invalid admin key"}},
)
async def erase_customer(customer_id: str, store: StoreDep) -> Erased:
    """Erase a customer (GDPR/CCPA), named by any of their ids: the profile and the links of
    all their ids are deleted now, and an erase marker goes through the event stream so that
    the dataflow forgets their state and unlinks their ids; an event that arrives afterwards
    starts a new, empty profile. Idempotent."""
    now = time.time_ns() // 1_000_000
    cid, removed, marker = await store.erase(customer_id, f"erase-{uuid.uuid4()}", now)
    return Erased(requested_id=customer_id, customer_id=cid, removed=removed, erase_marker=marker)
