"""The FastAPI app factory. ``uvicorn --factory api.main:create_app`` or ``nudge api``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisClusterException, RedisError

from api.decision_log import DecisionLog
from api.hot import HotRoutes, hot_route
from api.metrics import RequestContext
from api.ops import OpsSampler
from api.routes import customers, decide, health, ingest, learning, ops
from api.store import Store
from config import ConfigError, Settings, get_settings
from config.catalog import CatalogError, load_catalog
from config.connect import async_client, cluster_unavailable
from config.logs import setup_logging
from config.runtime import tune_gc
from models.consent import ConsentPolicy
from models.keys import Keys
from models.learning import Learner, LearnerError, decode_learner, scorer
from models.products import Catalogue, ProductsError, decoding

log = logging.getLogger(__name__)


def use_learner(app: FastAPI, learner: Learner) -> None:
    app.state.learner = learner
    app.state.propensity = scorer(learner)


async def _decode_index(blob: bytes) -> Catalogue:
    """The published product index (megabytes), read a step at a time: requests are served
    between the steps instead of waiting ~50 ms for the whole of it."""
    for done in decoding(blob):
        if done is not None:
            return done
        await asyncio.sleep(0)
    raise AssertionError("unreachable: `decoding` ends with the catalogue")


async def _refresh_published(app: FastAPI, store: Store, arms: list[str], every_s: float) -> None:
    """Poll what the dataflow publishes for decisions: the response models (one key per arm
    of the catalog; a new `Learner` is swapped in when any changed, a bad blob is logged and
    the others are used) and the product index (swapped in when its version changes)."""
    last: dict[str, bytes] = {}
    version: bytes | None = None
    while True:
        try:
            seen, blob = await store.product_index(version)
            if blob is not None:
                version = seen  # a bad index is logged once, not re-read until it changes
                app.state.products = await _decode_index(blob)
        except ProductsError as exc:
            log.warning("product index not loaded: %s", exc)
        except RedisError as exc:
            log.warning("product index not reloaded: %s", exc)
        try:
            blobs = await store.model_blobs(arms)
            if blobs != last:
                learner = Learner()
                for arm, blob in blobs.items():
                    try:
                        learner.arms.update(decode_learner(blob).arms)
                    except LearnerError as exc:
                        log.warning("response model %s not loaded: %s", arm, exc)
                use_learner(app, learner)
                last = blobs
        except RedisError as exc:
            log.warning("response models not reloaded: %s", exc)
        await asyncio.sleep(every_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Keys are required; the Redis client is created at startup, not here."""
    settings = settings or get_settings()
    setup_logging(settings.log_format, settings.log_level)
    settings.require_keys()
    url = settings.require_redis()
    try:
        catalog = load_catalog(settings.catalog)
    except CatalogError as exc:
        raise ConfigError(f"NUDGE_CATALOG: {exc}") from exc

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_gc()
        # A blip (restart, fail-over) is retried briefly; past that the API answers 503 and
        # SDKs retry. Retrying an XADD pipeline may store an entry twice: the dataflow counts
        # a messageId once.
        client = async_client(
            url,
            cluster=settings.redis_cluster,
            max_connections=256,
            health_check_interval=30,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.01), 3),
        )
        store = Store(
            client, Keys(settings.key_prefix), settings.partitions, settings.deadletter_maxlen
        )
        try:
            problem = await store.claim_layout()
        except RedisClusterException as exc:  # the cluster client found no cluster there
            problem = cluster_unavailable(url, exc)
        if problem:
            await client.aclose()
            raise ConfigError(problem)
        app.state.store = store
        arms = [Learner.key(m.id, ch) for m in catalog.messages for ch in m.channels]
        refresher = asyncio.create_task(
            _refresh_published(app, store, arms, settings.model_refresh_s)
        )
        decisions = app.state.decision_log = DecisionLog(store)
        flusher = asyncio.create_task(decisions.run())
        sampler = app.state.ops = OpsSampler(store, settings.ops_sample_s)
        sampling = asyncio.create_task(sampler.run())
        try:
            yield
        finally:
            refresher.cancel()
            flusher.cancel()
            sampling.cancel()
            await decisions.flush()
            await store.aclose()

    app = FastAPI(
        title="nudge",
        version="0.1.0",
        summary="Real-time personalization: Segment-compatible ingest, profiles, decisions.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.consent_policy = ConsentPolicy(frozenset(settings.consent_opt_in))
    app.state.catalog = catalog
    use_learner(app, Learner())  # the cold-start prior, until the dataflow publishes models
    app.state.products = None  # no suggestions until the dataflow publishes a product index
    # the hot routes first: a request is matched against the routes in order
    app.include_router(decide.router)
    app.include_router(ingest.router)
    app.include_router(health.router)
    app.include_router(customers.router)
    app.include_router(learning.router)
    app.include_router(ops.router)
    app.state.hot_routes = {}
    app.add_middleware(HotRoutes, routes=app.state.hot_routes)  # inside RequestContext
    app.add_middleware(RequestContext)
    hot_route(app, "/v1/decide", decide.decide_get)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> JSONResponse:
        # Not the client's fault: say so, so that SDKs retry (Segment's retry on 5xx).
        log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": f"storage unavailable, retry later: {type(exc).__name__}"}, status_code=503
        )

    return app
