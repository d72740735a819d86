"""GET /api/models: what the page's model picker lists (from the engine)."""

from __future__ import annotations

from fastapi import APIRouter

from vmeta.serve import schemas
from vmeta.serve.deps import InferenceEngine, State

router = APIRouter(tags=["models"])


@router.get("/api/models", response_model=list[schemas.ModelOut])
def list_models(engine: InferenceEngine, state: State) -> list[schemas.ModelOut]:
    """The servable variants, then those found but not servable (`available: false` with the reason, e.g. an
    adapter trained on another base), so the page can show why a run is missing rather than hide it."""
    infos = engine.models()
    default = state.settings.default_chat_model
    if default not in {m.id for m in infos}:
        default = infos[0].id if infos else None
    blocked = getattr(engine, "unavailable", list)()  # engines that know what they cannot serve
    rows = [(m, None) for m in infos] + [(m, reason) for m, reason in blocked]
    return [
        schemas.ModelOut(
            id=m.id,
            base=m.base,
            adapter=m.adapter,
            kind=m.kind,
            description=m.description,
            default=reason is None and m.id == default,
            available=reason is None,
            reason=reason,
            frames=m.frames,
            context=list(m.context),
        )
        for m, reason in rows
    ]
