"""Segment-compatible ingest (HTTP Tracking API) and a native msgpack endpoint.

``POST /v1/batch`` and the single-call endpoints take Segment's exact wire format (JSON,
optionally gzip; write key as Basic user or ``writeKey``). Each accepted event is validated
and normalised by `models.segment`; valid events are appended to the partitioned event
streams and invalid ones to the dead-letter stream, in one pipelined round trip, and the
answer is sent once Redis holds them.
"""

from __future__ import annotations

import time
import uuid
import zlib
from typing import Annotated, Any

import msgpack
import orjson
from fastapi import APIRouter, Header, HTTPException, Request, status

from api.deps import SettingsDep, StoreDep, check_write_key
from api.metrics import count_ingest
from api.schemas import ErrorResponse, IngestResponse, RejectedEvent
from api.store import Rejected
from models.events import SEGMENT_TYPES, Event
from models.segment import InvalidEvent, normalize, parse_time

router = APIRouter(prefix="/v1", tags=["ingest"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body is not JSON/msgpack of the right shape"},
    401: {"model": ErrorResponse, "description": "Missing or invalid write key"},
    413: {"model": ErrorResponse, "description": "Body, event or batch over the limits"},
    415: {"model": ErrorResponse, "description": "Unsupported Content-Encoding or type"},
}
SEGMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A Segment Spec call (track, identify, page, screen, alias, "
                    "group), or for /v1/batch {batch: [...], context?, sentAt?, writeKey?}.",
                    "additionalProperties": True,
                }
            }
        },
    }
}


def _new_id() -> str:
    return str(uuid.uuid4())


async def _read_body(request: Request, limit: int, encoding: str | None) -> bytes:
    """The request body, gunzipped when declared, refusing anything over `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"request body is larger than {limit} bytes"
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"Content-Encoding {encoding!r} is not supported: send gzip, deflate or none",
        )
    return _inflate(body, 31 if "gzip" in coding else 15, limit, coding)


def _inflate(data: bytes, wbits: int, limit: int, coding: str) -> bytes:
    """Decompress every member (gzip bodies may hold several), never past `limit` bytes."""
    out: list[bytes] = []
    size = 0
    while data:
        inflater = zlib.decompressobj(wbits)
        try:
            chunk = inflater.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"body is not valid {coding}: {exc}"
            ) from exc
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"decompressed body is larger than {limit} bytes"
            )
        if not inflater.eof:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body is truncated {coding}")
        out.append(chunk)
        data = inflater.unused_data if wbits == 31 else b""
        if not data.strip(b"\x00"):
            break  # trailing zero padding after the last member, as gzip(1) tolerates
    return b"".join(out)


async def _json_call(
    request: Request,
    settings: SettingsDep,
    limit: int,
    authorization: str | None,
    content_encoding: str | None,
) -> dict[str, Any]:
    """The JSON object of a Segment call or batch, once its write key has been checked."""
    body = _parse_json(await _read_body(request, limit, content_encoding))
    if not isinstance(body, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body must be a JSON object")
    check_write_key(settings, authorization, body.get("writeKey"))
    return body


def _parse_json(body: bytes) -> Any:
    if not body:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body is not valid JSON: {exc}") from exc


def _validate(
    items: list[Any],
    *,
    max_event_bytes: int,
    received_at: int,
    type_hint: str | None,
    sent_at: int | None,
    batch_context: dict[str, Any] | None,
) -> tuple[list[Event], list[Rejected]]:
    events: list[Event] = []
    rejected: list[Rejected] = []
    counts: dict[tuple[str, str], list[int]] = {}  # (type, outcome) -> [events, bytes]
    # the batch's context is merged into every event: it counts in each one's size
    extra = len(orjson.dumps(batch_context)) if batch_context else 0
    for index, item in enumerate(items):
        kind = _kind(item, type_hint)
        try:
            raw = orjson.dumps(item)
        except TypeError:
            _count(counts, kind, "rejected", 0)
            # msgpack can carry what JSON cannot (binary, non-string keys): refuse it here so
            # that every stored event can be read back as JSON
            rejected.append(
                Rejected(
                    index,
                    "(event)",
                    "holds values JSON cannot represent "
                    "(binary data, msgpack timestamps, non-string keys)",
                    repr(item).encode()[:max_event_bytes],
                )
            )
            continue
        try:
            if len(raw) + extra > max_event_bytes:
                raise InvalidEvent(
                    "(event)",
                    f"event is larger than {max_event_bytes} bytes"
                    + (" with the batch's context merged in" if extra else ""),
                )
            events.append(
                normalize(
                    item,
                    received_at=received_at,
                    new_id=_new_id,
                    type_hint=type_hint,
                    sent_at=sent_at,
                    batch_context=batch_context,
                )
            )
            _count(counts, kind, "accepted", len(raw))
        except InvalidEvent as exc:
            rejected.append(Rejected(index, exc.field, exc.reason, raw))
            _count(counts, kind, "rejected", len(raw))
    count_ingest(counts)
    return events, rejected


def _kind(item: Any, type_hint: str | None) -> str:
    """The Segment call type of `item`, for metrics (a bounded set of labels)."""
    kind = type_hint or (item.get("type") if isinstance(item, dict) else None)
    return kind if kind in SEGMENT_TYPES else "unknown"


def _count(counts: dict[tuple[str, str], list[int]], kind: str, outcome: str, size: int) -> None:
    c = counts.get((kind, outcome))
    if c is None:
        counts[kind, outcome] = [1, size]
    else:
        c[0] += 1
        c[1] += size


def _batch_header(body: dict[str, Any]) -> tuple[int | None, dict[str, Any] | None]:
    sent_raw = body.get("sentAt")
    try:
        sent_at = parse_time(sent_raw, "sentAt") if sent_raw is not None else None
    except InvalidEvent as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"sentAt: {exc.reason}") from exc
    ctx = body.get("context")
    if ctx is not None and not isinstance(ctx, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "context: must be a JSON object")
    return sent_at, ctx


async def _store(
    store: StoreDep,
    events: list[Event],
    rejected: list[Rejected],
    endpoint: str,
    received_at: int,
    single: bool,
) -> IngestResponse:
    await store.append(events, rejected, endpoint, received_at)
    out = IngestResponse(
        success=bool(events),
        accepted=len(events),
        rejected=[RejectedEvent(index=r.index, field=r.field, reason=r.reason) for r in rejected],
    )
    if single and rejected:
        # A single call carries one event: an invalid one is the whole request's error.
        r = rejected[0]
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, {"field": r.field, "reason": r.reason, "index": 0}
        )
    return out


@router.post("/batch", response_model=IngestResponse, responses=ERRORS, openapi_extra=SEGMENT_BODY)
@router.post(
    "/import",
    response_model=IngestResponse,
    responses=ERRORS,
    openapi_extra=SEGMENT_BODY,
    include_in_schema=False,
)
async def batch(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    authorization: Annotated[str | None, Header()] = None,
    content_encoding: Annotated[str | None, Header()] = None,
) -> IngestResponse:
    """Segment's ``/v1/batch``: up to 2,500 events and 500 KB; valid ones are stored even when
    others in the batch are not (those are listed in `rejected` and dead-lettered)."""
    received_at = time.time_ns() // 1_000_000
    body = await _json_call(
        request, settings, settings.max_batch_bytes, authorization, content_encoding
    )
    items = body.get("batch")
    if not isinstance(items, list):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "batch: must be an array of events")
    sent_at, ctx = _batch_header(body)
    return await _ingest_many(items, settings, store, "batch", received_at, sent_at, ctx)


async def _ingest_many(
    items: list[Any],
    settings: SettingsDep,
    store: StoreDep,
    endpoint: str,
    received_at: int,
    sent_at: int | None = None,
    batch_context: dict[str, Any] | None = None,
) -> IngestResponse:
    """A batch's events: each valid one stored, each invalid one listed and dead-lettered."""
    if len(items) > settings.max_batch_events:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"batch: {len(items)} events, more than the limit of {settings.max_batch_events}",
        )
    events, rejected = _validate(
        items,
        max_event_bytes=settings.max_event_bytes,
        received_at=received_at,
        type_hint=None,
        sent_at=sent_at,
        batch_context=batch_context,
    )
    return await _store(store, events, rejected, endpoint, received_at, single=False)


def _single(call: str) -> Any:
    async def endpoint(
        request: Request,
        settings: SettingsDep,
        store: StoreDep,
        authorization: Annotated[str | None, Header()] = None,
        content_encoding: Annotated[str | None, Header()] = None,
    ) -> IngestResponse:
        received_at = time.time_ns() // 1_000_000
        body = await _json_call(
            request, settings, settings.max_event_bytes, authorization, content_encoding
        )
        events, rejected = _validate(
            [body],
            max_event_bytes=settings.max_event_bytes,
            received_at=received_at,
            type_hint=call,
            sent_at=None,
            batch_context=None,
        )
        return await _store(store, events, rejected, call, received_at, single=True)

    endpoint.__name__ = call
    endpoint.__doc__ = f"Segment's ``/v1/{call}`` call."
    return endpoint


for _call in ("track", "identify", "page", "screen", "alias", "group"):
    router.add_api_route(
        f"/{_call}",
        _single(_call),
        methods=["POST"],
        response_model=IngestResponse,
        responses=ERRORS,
        openapi_extra=SEGMENT_BODY,
    )


@router.post(
    "/events",
    response_model=IngestResponse,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/msgpack": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "msgpack array of Segment Spec calls (maps with the "
                        "same field names as JSON, each with its `type`).",
                    }
                }
            },
        }
    },
)
async def native(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    authorization: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
    content_encoding: Annotated[str | None, Header()] = None,
) -> IngestResponse:
    """Native high-volume ingest: a msgpack array of Segment calls; write key as Basic user or
    Bearer token. Same validation, limits and dead-lettering as ``/v1/batch``."""
    received_at = time.time_ns() // 1_000_000
    check_write_key(settings, authorization, None)
    if content_type is None or content_type.split(";")[0].strip() not in (
        "application/msgpack",
        "application/x-msgpack",
    ):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/msgpack (or use /v1/batch for JSON)",
        )
    body = await _read_body(request, settings.max_batch_bytes, content_encoding)
    try:
        # msgpack Timestamps stay msgpack.Timestamp objects, which JSON cannot hold: such an
        # event is refused by name like any other (send times as ISO-8601 strings)
        items = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"body is not valid msgpack: {exc}"
        ) from exc
    if not isinstance(items, list):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body must be a msgpack array of events")
    return await _ingest_many(items, settings, store, "events", received_at)
