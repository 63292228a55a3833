"""What the decisions learned: the response models' progressive-validation figures per arm,
the share of decisions that explored, and the product index in use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import ApiKey
from api.schemas import ErrorResponse, LearningOut
from api.store import Store
from models.learning import Learner
from models.products import Catalogue

router = APIRouter(prefix="/v1", tags=["decisions"])


@router.get(
    "/models",
    dependencies=[ApiKey],
    response_model=LearningOut,
    responses={401: {"model": ErrorResponse, "description": "Missing or invalid API key"}},
)
async def get_models(request: Request) -> dict[str, Any]:
    """Per (message, channel) arm: labelled examples, response rate, progressive ROC AUC and
    log loss (each label predicted before it was learned) and how far the model is trusted
    over the cold-start prior; decisions served and explored (all API replicas); the product
    index this replica answers suggestions from."""
    state = request.app.state
    store: Store = state.store
    learner: Learner = state.learner
    products: Catalogue | None = state.products
    stats = await store.stats()
    served = stats.get("decisions_served", 0)
    explored = stats.get("decisions_explored", 0)
    return {
        "arms": learner.report(),
        "decisions": {
            "served": served,
            "explored": explored,
            "explore_share": explored / served if served else 0.0,
            "strategy": state.catalog.policy.exploration_strategy,
        },
        "products": {
            "indexed": len(products.trend) if products is not None else 0,
            "with_partners": len(products.co) if products is not None else 0,
        },
    }
