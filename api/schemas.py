"""Request and response models, so that the OpenAPI document says exactly what is served."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the batch (0 for single calls).")
    field: str = Field(description="The offending field, as a dotted path.")
    reason: str


class IngestResponse(BaseModel):
    success: bool = Field(description="True when at least one event was accepted.")
    accepted: int
    rejected: list[RejectedEvent] = Field(
        default_factory=list,
        description="Invalid events, also kept in the dead-letter stream with their payload.",
    )


class ErrorResponse(BaseModel):
    detail: Any


class Health(BaseModel):
    status: str


class SessionOut(BaseModel):
    started_at: str
    last_event_at: str
    events: int
    duration_s: float
    channel: str
    active: bool


class CartItem(BaseModel):
    product_id: str
    quantity: float
    price: float


class CartOut(BaseModel):
    items: list[CartItem]
    quantity: float
    value: float
    updated_at: str | None


class OrdersOut(BaseModel):
    count: int
    revenue: float
    average_value: float | None
    last_order_at: str | None
    recent_products: list[str] = Field(
        default_factory=list, description="The latest products bought, most recent first."
    )


class EventsOut(BaseModel):
    total: int
    by_type: dict[str, int]
    decayed: dict[str, float]
    half_life_s: float


class SessionsOut(BaseModel):
    count: int
    current: SessionOut | None


class AffinityOut(BaseModel):
    categories: dict[str, float]
    brands: dict[str, float]


class Erased(BaseModel):
    requested_id: str = Field(description="The id the call named.")
    customer_id: str = Field(description="The canonical customer id the id resolved to.")
    removed: list[str] = Field(
        description="What was deleted from Redis right away: `profile`, `decisions` (the "
        "history of messages served), and `link:<id>` for each linked id."
    )
    erase_marker: str = Field(
        description="Entry id of the erase marker in the event stream: once the dataflow has "
        "read past it (see `nudge lag`), its state for the customer is gone too."
    )


class ConsentOut(BaseModel):
    granted: bool
    at: str
    source: str | None


class ProfileOut(BaseModel):
    requested_id: str = Field(description="The id the call named (any id of the customer).")
    customer_id: str = Field(description="The canonical customer id the answer is for.")
    ids: list[str] = Field(description="The other ids linked to this customer.")
    first_seen: str
    last_seen: str
    events: EventsOut
    sessions: SessionsOut
    recent_products: list[str]
    affinity: AffinityOut
    cart: CartOut
    orders: OrdersOut
    channels: dict[str, str]
    traits: dict[str, Any]
    consent: dict[str, dict[str, ConsentOut]] = Field(
        description="Explicit statements per channel and purpose (latest wins)."
    )
    contactable: dict[str, bool] = Field(
        description="Per channel, whether marketing may reach the customer: explicit consent, "
        "else the policy (NUDGE_CONSENT_OPT_IN channels need a grant)."
    )


class DecideIn(BaseModel):
    customer_id: str = Field(min_length=1, max_length=512, description="Any of the customer's ids.")
    channel: str = Field(description="web, app, email, sms, push, store or call.")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="What the caller knows now: page, product, locale, timezone (IANA).",
    )


class MessageOut(BaseModel):
    id: str
    content: dict[str, str] = Field(description="The message rendered for the channel.")
    value: float
    lever: float


class DecisionOut(BaseModel):
    decision_id: str
    requested_id: str
    customer_id: str = Field(description="The canonical customer id the decision is for.")
    channel: str
    message: MessageOut | None = Field(description="null: nothing to say now (see suppressed_by).")
    score: float = Field(
        description="propensity * value * lever of the chosen message (the propensity drawn "
        "from the model's posterior under Thompson sampling)."
    )
    reason: str
    explore: bool = Field(description="Whether the choice was exploration rather than the best.")
    suppressed_by: str | None = Field(
        description="The rule that said no: holdout, consent, quiet_hours, recent_conversion, "
        "frequency_cap, no_eligible_message or cooldown."
    )
    retry_after: str | None = Field(
        default=None, description="quiet_hours: when they end (ISO-8601, UTC)."
    )
    suggestions: list[str] = Field(default_factory=list)


class ArmOut(BaseModel):
    examples: int = Field(description="Labelled decisions learned from.")
    response_rate: float
    roc_auc: float = Field(description="Progressive validation: each label predicted first.")
    log_loss: float
    trust: float = Field(description="Weight of the model against the cold-start prior (0-1).")


class DecisionsOut(BaseModel):
    served: int
    explored: int
    explore_share: float
    strategy: str = Field(description="How decisions explore: epsilon-greedy or thompson.")


class ProductIndexOut(BaseModel):
    indexed: int = Field(description="Products in the index this API replica uses.")
    with_partners: int


class LearningOut(BaseModel):
    arms: dict[str, ArmOut]
    decisions: DecisionsOut
    products: ProductIndexOut
