"""The review page's web app: `create_review_app(dataset_root, reviewer)` -> a FastAPI app.

Routes (all JSON errors are `{"detail": sentence}`):
  GET  /                              the page (plain HTML + ES modules under /static, no build step)
  GET  /api/items?filter=pending      the queue: id, category, status, flags; counts per status
  GET  /api/items/{id}?filter=...     one record: raw / rewritten / current label, slots with spans, notices,
                                      video metadata, its position n of N in the queue
  POST /api/items/{id}/decision       {action: accept|edit|reject|reset, text?, note?, expected_label?}
                                      409 when expected_label is stale; nothing is written then
  POST /api/parse                     {text} -> slots, spans, segments, conformance (live highlighting)
  GET  /video/{id}                    the record's video, with HTTP Range (206) so the player can seek

POSTs need the per-process token embedded in the page (header X-Review-Token) and a same-origin request.
Records are re-read when records.jsonl changes on disk, so a rewrite job running beside the page is seen.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from vmeta.dataset import review as rv
from vmeta.dataset.records import Dataset, Record
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

PAGE = STATIC_DIR / "review" / "review.html"
TOKEN_HEADER = "X-Review-Token"


class DecisionIn(BaseModel):
    action: Literal["accept", "edit", "reject", "reset"]
    text: str | None = Field(None, description="The new label (edit only).")
    note: str = Field("", max_length=4000)
    expected_label: str | None = Field(None, description="The label as the page showed it; 409 if it changed.")


class ParseIn(BaseModel):
    text: str = Field("", max_length=20000)


class _Store:
    """records.jsonl, re-read only when its size or mtime changes."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self._key: tuple[int, int, int] | None = None
        self._records: list[Record] = []
        self._lock = threading.Lock()

    def records(self) -> list[Record]:
        st = self.dataset.records_path.stat()
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if key != self._key:
                self._records = self.dataset.load()
                self._key = key
            return self._records

    def invalidate(self) -> None:
        with self._lock:
            self._key = None


def _summary(record: Record) -> dict[str, Any]:
    return {
        "id": record.id,
        "category": record.category,
        "status": record.review.status.value,
        "flags": record.flags,
        "conforms": record.conforms,
    }


def item_view(dataset: Dataset, record: Record, ids: list[str]) -> dict[str, Any]:
    """Everything the page shows for one record."""
    rewrite = record.rewrite
    try:
        position = ids.index(record.id) + 1
    except ValueError:
        position = None
    meta = record.video_meta.model_dump(mode="json")
    return {
        **_summary(record),
        "position": position,
        "total": len(ids),
        "video_url": "/video/" + quote(record.id, safe=""),
        "video": record.video,
        "video_exists": dataset.video_path(record).is_file(),
        "video_meta": meta,
        "raw_label": record.raw_label,
        "rewrite": None
        if rewrite is None
        else {"model": rewrite.model, "text": rewrite.text, "ok": rewrite.ok, "error": rewrite.error, "at": rewrite.at},
        "stripped_note": rv.stripped_note(record),
        "label": record.label,
        "label_origin": record.label_origin,
        "analysis": rv.analyze(record.label),
        "review": record.review.model_dump(mode="json"),
        "source": record.source.model_dump(mode="json"),
        "split": record.split,
    }


def create_review_app(
    dataset_root: str | Path,
    reviewer: str | None = None,
    *,
    default_filter: str = rv.DEFAULT_FILTER,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The review app for one dataset folder. `reviewer` is recorded in the audit log (default: $USER).

    `allowed_hosts`: Host header values accepted (default: loopback names only; ["*"] for any)."""
    dataset = Dataset(dataset_root).require()
    who = rv.default_reviewer(reviewer)
    default_filter = rv.check_filter(default_filter)
    guard = TokenGuard(TOKEN_HEADER, token)
    store = _Store(dataset)

    app = FastAPI(title="vmeta review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = guard.token
    app.state.dataset = dataset
    app.state.reviewer = who
    install_error_handlers(app, {rv.UnknownRecord: 404, rv.ReviewConflict: 409})
    security_headers(app)
    restrict_hosts(app, allowed_hosts)
    mount_static(app)

    def ids_for(filter: str) -> tuple[list[Record], list[str]]:
        records = store.records()
        return records, [r.id for r in rv.queue(records, filter)]

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, filter: str | None = None) -> HTMLResponse:
        lang = pick_language(request)
        html = render_page(
            PAGE,
            token=guard.token,
            reviewer=who,
            filter=rv.check_filter(filter or default_filter),
            lang=lang,
            dataset=dataset.root.resolve().name,
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/items")
    def list_items(filter: str = default_filter) -> dict[str, Any]:
        filter = rv.check_filter(filter)
        records = store.records()
        items = rv.queue(records, filter)
        return {
            "filter": filter,
            "filters": list(rv.FILTERS),
            "items": [_summary(r) for r in items],
            "counts": rv.counts(records),
            "reviewer": who,
            "dataset": str(dataset.root),
        }

    @app.get("/api/items/{record_id:path}")
    def get_item(record_id: str, filter: str = default_filter) -> dict[str, Any]:
        records, ids = ids_for(rv.check_filter(filter))
        return item_view(dataset, rv.find(records, record_id, dataset), ids)

    @app.post("/api/items/{record_id:path}/decision", dependencies=[Depends(guard)])
    def post_decision(record_id: str, body: DecisionIn, filter: str = default_filter) -> dict[str, Any]:
        decision = rv.decide(
            dataset,
            record_id,
            body.action,
            text=body.text if body.action == "edit" else None,
            note=body.note,
            reviewer=who,
            expected_label=body.expected_label,
        )
        store.invalidate()
        records, ids = ids_for(rv.check_filter(filter))
        return {
            "item": item_view(dataset, decision.record, ids),
            "entry": decision.entry,
            "counts": rv.counts(records),
        }

    @app.post("/api/parse", dependencies=[Depends(guard)])
    def post_parse(body: ParseIn) -> dict[str, Any]:
        return rv.analyze(body.text)

    @app.api_route("/video/{record_id:path}", methods=["GET", "HEAD"])
    def video(record_id: str, request: Request) -> Response:
        records = store.records()
        try:
            record = rv.find(records, record_id, dataset)
        except rv.UnknownRecord:
            raise HTTPException(404, f"no record with id {record_id!r}, so no video.") from None
        path = dataset.video_path(record)
        if not path.is_file():
            raise HTTPException(404, f"the video of record {record_id!r} ({record.video}) is missing on disk.")
        return file_response(path, request)

    return app


__all__ = ["DecisionIn", "ParseIn", "create_review_app", "item_view"]
