"""GET /api/models: what the page's model picker lists (from the engine)."""

from __future__ import annotations

from fastapi import APIRouter

from vmeta.serve import schemas
from vmeta.serve.deps import InferenceEngine, State

router = APIRouter(tags=["models"])


@router.get("/api/models", response_model=list[schemas.ModelOut])
def list_models(engine: InferenceEngine, state: State) -> list[schemas.ModelOut]:
    infos = engine.models()
    default = state.settings.default_chat_model
    if default not in {m.id for m in infos}:
        default = infos[0].id if infos else None
    return [
        schemas.ModelOut(
            id=m.id, base=m.base, adapter=m.adapter, kind=m.kind, description=m.description, default=m.id == default
        )
        for m in infos
    ]
