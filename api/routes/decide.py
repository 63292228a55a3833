"""The next-best message for a customer on a channel: ``GET``/``POST /v1/decide``.

One Redis round trip on the answer's path (a linked id costs a second): a script that reads
the profile, link and contact history and takes the customer's decision hold
(`models/scripts/decision_read.lua`), so that the caps and cooldowns computed from that
history stay exact while this decision is made. After the answer, off its path, the contact
served (if any) is recorded and the hold released (`decision_done.lua`, sent with the next
command on the connection, at the latest right after the answer: `api.multiplex`), and the
served decision is logged for learning in batches (`api.decision_log`). A decision that finds
another holding the customer serves nothing (``frequency_cap``, one decision at a time per
customer). Nothing is loaded per request: the catalog is compiled at start-up. ``GET`` is
served past FastAPI's routing (`api.hot`); ``POST`` goes FastAPI's way (its body is validated).
"""

from __future__ import annotations

import logging
import random
import time
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response, status

from api.decision_log import DecisionLog
from api.deps import ApiKey, require_api_key
from api.ids import RandomIds
from api.metrics import count_decision
from api.schemas import DecideIn, DecisionOut, ErrorResponse
from api.store import Store
from config import Settings
from config.catalog import Catalog
from config.channels import CHANNELS
from config.logs import DECISION_ID
from models.consent import ConsentPolicy
from models.customer import new_state, profile_params
from models.decision import IN_FLIGHT, contact_member, decide
from models.events import decision_event
from models.learning import vector
from models.products import Catalogue, for_profile
from models.profile import decode_profile, iso, to_profile

router = APIRouter(prefix="/v1", tags=["decisions"])
_log = logging.getLogger(__name__)
_RNG = random.Random()  # exploration draws; seeded from the OS per process
_IDS = RandomIds()  # decision ids

RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Unknown channel"},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
}


_QUERY = {
    "security": [{"ApiKey": []}],  # checked in the handler (`require_api_key`)
    "parameters": [
        {"name": "customer_id", "in": "query", "required": True,
         "description": "any of the customer's ids (1 to 512 characters)",
         "schema": {"type": "string", "minLength": 1, "maxLength": 512}},
        {"name": "channel", "in": "query", "required": True,
         "description": f"one of: {', '.join(CHANNELS)}", "schema": {"type": "string"}},
    ]
}  # fmt: skip


@router.get(
    "/decide",
    response_model=DecisionOut,
    responses={**RESPONSES, 422: {"model": ErrorResponse, "description": "Missing parameter"}},
    openapi_extra=_QUERY,
)
async def decide_get(request: Request) -> Response:
    """The next-best message for `customer_id` (any of their ids) on `channel`, or
    `message: null` with the rule that suppressed it."""
    # the key and the query checked here, documented by `_QUERY`: FastAPI's solving of
    # parameters and dependencies cost ~25% of a decision
    await require_api_key(request)
    query = request.query_params
    customer_id, channel = query.get("customer_id"), query.get("channel")
    if not customer_id or len(customer_id) > 512:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "customer_id: required, 1 to 512 characters (any of the customer's ids)",
        )
    if channel is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"channel: required, one of {', '.join(CHANNELS)}",
        )
    return await _decide(request.app.state, customer_id, channel, {})


@router.post("/decide", dependencies=[ApiKey], response_model=DecisionOut, responses=RESPONSES)
async def decide_post(request: Request, body: DecideIn) -> Response:
    """As `GET`, with what the caller knows now in `context` (page, product, locale,
    timezone)."""
    return await _decide(request.app.state, body.customer_id, body.channel, body.context)


async def _decide(state: Any, any_id: str, channel: str, context: dict[str, Any]) -> Response:
    # the app's state, read here rather than through four FastAPI dependencies: each costs
    # ~20 µs of dependency solving on every decision
    store: Store = state.store
    catalog: Catalog = state.catalog
    consent: ConsentPolicy = state.consent_policy
    settings: Settings = state.settings
    log: DecisionLog = state.decision_log
    if channel not in CHANNELS:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"channel: unknown channel {channel!r} (known: {', '.join(CHANNELS)})",
        )
    started = time.perf_counter()
    now = time.time_ns() // 1_000_000
    keep_ms = catalog.keep_s * 1000
    decision_id = _IDS.hex()
    cid, blob, history, held = await store.decision_inputs(any_id, now, keep_ms, decision_id)
    served: str | None = None  # the contact to record: "channel|message|decision"
    try:
        profile = (
            decode_profile(blob)
            if blob
            else to_profile(new_state(cid, now), profile_params(settings))
        )
        products: Catalogue | None = state.products
        d = decide(
            catalog, profile, channel, now, history, context, consent, state.propensity,
            suggest=partial(for_profile, products) if products is not None else None, rng=_RNG,
            sample=state.propensity.sample,
        )  # fmt: skip
        message = d.message
        if message is not None and not held:
            # another decision holds this customer: its contact is not in the history yet
            message, d.suppressed_by, d.reason = None, "frequency_cap", IN_FLIGHT
        if message is not None:
            served = contact_member(channel, message.id, decision_id)
    finally:
        if held:
            # the contact recorded and the hold released after the answer (one round trip
            # on the answer's path: the history read under the hold is exact until then)
            store.decision_done(cid, decision_id, now, keep_ms, served)
    DECISION_ID.set(decision_id)  # on every log line of this request from here
    if message is not None:
        # logged for the learning loop off the answer's path (`api.decision_log`: batched)
        x = vector(d.features)
        log.add(decision_event(cid, decision_id, message.id, channel, d.score, d.explore, now, x))
    # serialised straight to JSON (the shape of `DecisionOut`, which documents it): validating
    # our own output with pydantic on every decision would cost more than deciding
    out: dict[str, Any] = {
        "decision_id": decision_id,
        "requested_id": any_id,
        "customer_id": cid,
        "channel": channel,
        "message": (
            {"id": message.id, "content": d.content, "value": message.value,
             "lever": message.lever}
            if message is not None
            else None
        ),
        "score": d.score if message is not None else 0.0,
        "reason": d.reason,
        "explore": d.explore and message is not None,
        "suppressed_by": d.suppressed_by,
        "retry_after": iso(d.until_ms),
        "suggestions": d.suggestions if message is not None else [],
    }  # fmt: skip
    body = orjson.dumps(out)
    elapsed = time.perf_counter() - started
    if _log.isEnabledFor(logging.DEBUG):  # NUDGE_LOG_LEVEL=DEBUG: one line per decision
        _log.debug("decided", extra={"customer_id": cid, "channel": channel,
                                     "message_id": message.id if message is not None else None,
                                     "suppressed_by": d.suppressed_by,
                                     "ms": round(elapsed * 1000, 3)})  # fmt: skip
    count_decision(message.id if message is not None else None, channel, d.suppressed_by, elapsed)
    state.ops.decided(elapsed)
    return Response(body, media_type="application/json")
