"""The rating page's web app: `create_rate_app(study_root)` -> a FastAPI app (`vmeta rate serve STUDY`).

Routes (all JSON errors are `{"detail": sentence}`):
  GET  /                         the page (plain HTML + ES modules under /static, no build step)
  GET  /api/next?rater=NAME      the item this rater rates next: two answers labelled A and B, the video URL,
                                 the category, the reference when the study shows it, progress; or
                                 {done: true, progress} when nothing is left for them
  POST /api/ratings              {rater, item, choice: a|b|tie|both_wrong, slots: {"a": {...}, "b": {...}},
                                 note, seconds} -> stored; 409 when this rater already rated this item
  GET  /video/{item}             the item's video, with HTTP Range (206) so the player can seek

Blindness: nothing a response carries — body, URL, header — says which model wrote which answer, before or
after the rating is stored: answers are sent as A/B in the order `Study.shown_order` draws for this rater, and
the opaque item id is the only handle. Raters identify by a name the page keeps in localStorage; POSTs need the
per-process token embedded in the page and a same-origin request, as on the review page.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from vmeta.dataset.review import analyze
from vmeta.rating.study import AlreadyRated, Study, check_rater
from vmeta.web.common import (
    STATIC_DIR,
    TokenGuard,
    file_response,
    install_error_handlers,
    mount_static,
    pick_language,
    render_page,
    restrict_hosts,
    security_headers,
)

PAGE = STATIC_DIR / "rate" / "rate.html"
TOKEN_HEADER = "X-Rate-Token"


class RatingIn(BaseModel):
    rater: str = Field(..., description="The rater's name (checked by check_rater: 1-64 characters).")
    item: str = Field(..., max_length=200)
    choice: Literal["a", "b", "tie", "both_wrong"]
    slots: dict[Literal["a", "b"], dict[str, int | bool | None] | None] | None = None
    note: str = Field("", max_length=4000)
    seconds: float | None = Field(None, ge=0, le=86400 * 7)


def _text(text: str) -> dict[str, Any]:
    """A text and its slot-tagged segments (for highlighting); derived from the text alone."""
    return {"text": text, "segments": analyze(text)["segments"]}


def item_view(study: Study, rater: str, item: dict) -> dict[str, Any]:
    """What the page shows for one item — answers as A/B in this rater's order, no model name anywhere."""
    model_a, model_b = study.shown_order(rater, item["item"])
    view: dict[str, Any] = {
        "item": item["item"],
        "category": item.get("category") or study.category(item["id"]),
        "answers": [
            {"label": "A", **_text(study.answer(model_a, item["id"]))},
            {"label": "B", **_text(study.answer(model_b, item["id"]))},
        ],
        "video_url": "/video/" + quote(item["item"], safe="") if study.video_path(item["id"]) else None,
    }
    if study.meta.get("show_reference"):
        view["reference"] = _text(study.reference(item["id"]))
    return view


def create_rate_app(
    study_root: Any,
    *,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The rating app for one study folder. `allowed_hosts`: Host header values accepted (default: loopback
    names only; ["*"] when serving on a LAN address)."""
    study = Study.open(study_root)
    guard = TokenGuard(TOKEN_HEADER, token)
    rubric = study.meta.get("rubric") or {}
    slots = list(rubric.get("slots") or [])

    app = FastAPI(title="vmeta rate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = guard.token
    app.state.study = study
    install_error_handlers(app, {AlreadyRated: 409})
    security_headers(app)
    restrict_hosts(app, allowed_hosts)
    mount_static(app)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        html = render_page(
            PAGE,
            token=guard.token,
            lang=pick_language(request),
            slots=",".join(slots),
            study=study.root.resolve().name,
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/next")
    def next_item(rater: str = "") -> dict[str, Any]:
        rater = check_rater(rater)
        item = study.next_item(rater)
        progress = study.progress(rater)
        if item is None:
            return {"done": True, "progress": progress, "slots": slots}
        return {**item_view(study, rater, item), "progress": progress, "slots": slots}

    @app.post("/api/ratings", dependencies=[Depends(guard)])
    def post_rating(body: RatingIn) -> dict[str, Any]:
        rater = check_rater(body.rater)
        row = study.record(
            rater,
            body.item,
            body.choice,
            slots=body.slots,
            note=body.note,
            seconds=body.seconds,
            source="page",
        )
        # the stored row names the models; the rater gets only what they sent back, so the next items stay blind
        return {"stored": True, "item": row["item"], "time": row["time"], "progress": study.progress(rater)}

    @app.api_route("/video/{item}", methods=["GET", "HEAD"])
    def video(item: str, request: Request) -> Response:
        if item not in study.item_by_id:
            raise HTTPException(404, f"no item {item!r} in this study, so no video.")
        path = study.video_path(study.item_by_id[item]["id"])
        if path is None:
            raise HTTPException(404, f"the video of item {item!r} is not available (no dataset folder or no file).")
        return file_response(path, request)

    return app


__all__ = ["RatingIn", "create_rate_app", "item_view"]
