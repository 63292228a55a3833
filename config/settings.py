"""Settings (pydantic-settings, ``NUDGE_`` prefix), built once and passed in.

Nothing here opens a connection or reads a file at import time. Lists such as
``NUDGE_WRITE_KEYS`` are comma-separated strings. Keys are secrets (``SecretStr``) and
never appear in reprs or logs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KeyList = Annotated[tuple[SecretStr, ...], NoDecode]
Delays = Annotated[tuple[int, ...], NoDecode]


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which variable to set and how."""


def _split_keys(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(SecretStr(part.strip()) for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Every knob of nudge. Environment variables are ``NUDGE_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="NUDGE_", extra="ignore", frozen=True)

    # --- connections and keys -------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://host:port/db). Unset: `nudge up`/`demo` start an "
        "embedded Redis; every other command refuses to start.",
    )
    redis_cluster: bool = Field(
        default=False,
        description="NUDGE_REDIS_URL is a node of a Redis Cluster: use the cluster client.",
    )
    key_prefix: str = Field(default="nudge", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    partitions: int = Field(default=4, ge=1, le=1024, description="Event stream partitions.")
    cache_customers: int = Field(
        default=200_000, ge=0,
        description="Customer states the dataflow keeps in memory in all, split evenly over "
        "the stream partitions (the rest are read from Redis).",
    )  # fmt: skip
    write_keys: KeyList = Field(default=(), description="Keys that may send events.")
    api_keys: KeyList = Field(default=(), description="Bearer keys for read/decide calls.")
    admin_keys: KeyList = Field(default=(), description="Bearer keys for admin calls.")

    # --- ingest limits (Segment's HTTP Tracking API limits) -------------------------------
    max_event_bytes: int = Field(default=32 * 1024, ge=1024)
    max_batch_bytes: int = Field(default=500 * 1024, ge=1024)
    max_batch_events: int = Field(default=2500, ge=1)
    deadletter_maxlen: int = Field(default=100_000, ge=100)

    # --- customer state ---------------------------------------------------------------------
    session_gap_s: int = Field(default=30 * 60, ge=60)
    decay_half_life_s: int = Field(default=7 * 24 * 3600, ge=60)
    recent_products: int = Field(default=20, ge=1, le=200)
    dedupe_window_s: int = Field(
        default=24 * 3600,
        ge=0,
        description="A messageId received again within this many seconds counts once.",
    )
    dedupe_max_ids: int = Field(
        default=10_000,
        ge=1,
        description="At most this many recent messageIds are remembered per customer "
        "(8 bytes each); past it the oldest are forgotten first.",
    )
    lateness_s: int = Field(
        default=600, ge=0, description="Events up to this late give the same state as in order."
    )

    # --- identity ---------------------------------------------------------------------------
    identity: bool = Field(
        default=True,
        description="Stitch ids (identify, alias, events with both ids) into one customer.",
    )
    identity_max_ids: int = Field(
        default=100,
        ge=2,
        le=10_000,
        description="Most ids one customer may link; a merge past it is refused and logged.",
    )

    # --- product suggestions ------------------------------------------------------------------
    products: bool = Field(
        default=True,
        description="Keep the shop-wide product index for suggestions (costs dataflow CPU).",
    )

    # --- dataflow ---------------------------------------------------------------------------
    read_events: int = Field(
        default=5000, ge=1, description="Events per XREAD, about (the entry count adapts)."
    )
    idle_backoff_ms: int = Field(default=50, ge=1, le=5000)
    epoch_s: float = Field(default=2.0, gt=0, description="Bytewax epoch (snapshot) interval.")
    recovery_dir: Path = Field(default=Path(".nudge/recovery"))
    recovery_partitions: int = Field(default=1, ge=1)
    trim_after_s: float = Field(
        default=60.0,
        ge=10,
        description="Stream entries are trimmed only once a recovery snapshot at least this "
        "old has passed them.",
    )

    # --- consent -----------------------------------------------------------------------------
    consent_opt_in: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("email", "sms"),
        description="Channels where unknown consent means no (the others: yes until revoked).",
    )

    # --- decisions ----------------------------------------------------------------------------
    catalog: Path | None = Field(
        default=None,
        description="Message catalog and contact policy (TOML); unset: the built-in shop catalog.",
    )

    model_refresh_s: float = Field(
        default=2.0, gt=0, le=300, description="How often the API reloads the response models."
    )
    products_publish_s: float = Field(
        default=5.0, gt=0, le=3600,
        description="How often the dataflow publishes the product index (co-occurrence, trending).",
    )  # fmt: skip
    products_published: int = Field(
        default=20_000, ge=100, le=1_000_000,
        description="Products in the published index: the most trending.",
    )  # fmt: skip

    # --- triggers -------------------------------------------------------------------------------
    # a series of delays (seconds, comma-separated) from the last cart change / the checkout /
    # the last view: "3600,86400" = after 1 h, then a reminder after 24 h; "" turns a rule off
    trigger_cart_s: Delays = Field(default=(3600,), description="Abandoned cart delays.")
    trigger_checkout_s: Delays = Field(default=(3600,), description="Abandoned checkout delays.")
    trigger_browse_s: Delays = Field(default=(1800,), description="Browse abandonment delays.")
    trigger_cooldown_s: int = Field(
        default=86_400, ge=0, description="A rule fires for a customer at most once per this."
    )
    trigger_browse_views: int = Field(
        default=3, ge=1, le=100,
        description="Views of one product or category in a session that make browsing count.",
    )  # fmt: skip
    triggers_maxlen: int = Field(
        default=1_000_000, ge=1000, description="The triggers stream is trimmed to about this."
    )

    # --- webhooks (`nudge webhooks`) --------------------------------------------------------------
    webhook_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Where `nudge webhooks` POSTs every trigger (comma-separated)."
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key that signs webhook deliveries."
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=120)
    webhook_backoff_s: float = Field(default=1.0, gt=0, le=3600)
    webhook_backoff_cap_s: float = Field(default=600.0, gt=0, le=86_400)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)

    # --- API --------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)

    # --- operations -------------------------------------------------------------------------
    metrics_port: int = Field(
        default=9464, ge=0, le=65535,
        description="Port of the dataflow process's /metrics (0: none).",
    )  # fmt: skip
    metrics_host: str = Field(default="0.0.0.0", description="Bind address of that port.")
    probe_s: float = Field(
        default=1.0, ge=0, le=3600,
        description="Seconds between freshness probes per stream partition (0: none).",
    )  # fmt: skip
    lag_slo_s: float = Field(
        default=10.0, gt=0,
        description="Stream lag above which `nudge status` fails and the alert fires.",
    )  # fmt: skip
    ready_progress_s: float = Field(
        default=60.0, ge=0,
        description="/readyz fails if the dataflow has not reported for this long (0: off).",
    )  # fmt: skip
    ops_sample_s: float = Field(
        default=2.0, gt=0, le=60, description="Seconds between the samples of the /ops page."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="Log lines as JSON, text, or auto (text on a terminal)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    _split = field_validator("write_keys", "api_keys", "admin_keys", mode="before")(_split_keys)

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _split_urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = tuple(part.strip() for part in v.split(",") if part.strip())
        for url in v:
            if not str(url).startswith(("http://", "https://")):
                raise ValueError(f"{url!r}: a webhook URL starts with http:// or https://")
        return v

    @field_validator("consent_opt_in", mode="before")
    @classmethod
    def _split_channels(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(part.strip().lower() for part in v.split(",") if part.strip())
        return v

    @field_validator("trigger_cart_s", "trigger_checkout_s", "trigger_browse_s", mode="before")
    @classmethod
    def _split_delays(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return tuple(int(part) for part in v.split(",") if part.strip())
            except ValueError:
                raise ValueError(
                    f"{v!r}: seconds, comma-separated and increasing (e.g. 3600,86400), "
                    "or empty to turn the rule off"
                ) from None
        return v

    @field_validator("trigger_cart_s", "trigger_checkout_s", "trigger_browse_s")
    @classmethod
    def _check_delays(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d <= 0 for d in v) or list(v) != sorted(set(v)):
            raise ValueError(f"{v}: delays must be positive and increasing (e.g. 3600,86400)")
        return v

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "NUDGE_REDIS_URL must start with redis://, rediss:// or unix:// "
                "(e.g. redis://localhost:6379/0)"
            )
        return v

    def require_redis(self) -> str:
        """The Redis URL, or a `ConfigError` telling the operator to set it."""
        if not self.redis_url:
            raise ConfigError(
                "NUDGE_REDIS_URL is not set: point it at your Redis "
                "(e.g. NUDGE_REDIS_URL=redis://localhost:6379/0), or use `nudge up` "
                "for an embedded one."
            )
        return self.redis_url

    def require_keys(self) -> None:
        """Refuse to serve without keys: an open ingest or read API is never the default."""
        missing = [
            name
            for name, keys in (
                ("NUDGE_WRITE_KEYS", self.write_keys),
                ("NUDGE_API_KEYS", self.api_keys),
                ("NUDGE_ADMIN_KEYS", self.admin_keys),
            )
            if not keys
        ]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set: give each a comma-separated list of secret keys "
                "(e.g. NUDGE_API_KEYS=$(openssl rand -hex 16)); `nudge up` and `nudge demo` "
                "generate keys for you."
            )


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment plus overrides, turning errors into sentences."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            lines.append(f"NUDGE_{field.upper()}: {err['msg']}")
        raise ConfigError("invalid configuration — " + "; ".join(lines)) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return load_settings()
