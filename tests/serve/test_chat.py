"""Conversations: streamed answers with timings, multi-turn context with videos, model switching, list/search/
rename/delete/export, uploads with Range, long text, disconnects."""

from __future__ import annotations

import json


def test_stream_records_model_adapter_and_timings(app, make_user, echo_engine):
    a = make_user()
    cid = a.conversation()
    ev = a.say(cid, "第一句", model="echo")
    assert next(e["text"] for e in ev["token"]).startswith("echo[echo]")
    done = ev["done"][0]
    assert done["model"] == "echo" and done["adapter"] is None
    assert done["ttft_ms"] >= 0 and done["total_ms"] >= done["ttft_ms"] and done["server_overhead_ms"] >= 0
    ev = a.say(cid, "second", model="echo:lora")  # switch mid-conversation
    assert ev["done"][0]["adapter"] == "lora"
    conv = a.get(f"/api/conversations/{cid}").json()
    roles = [(m["role"], m["model"], m["adapter"]) for m in conv["messages"]]
    assert roles == [
        ("user", "echo", None),
        ("assistant", "echo", None),
        ("user", "echo:lora", None),
        ("assistant", "echo:lora", "lora"),
    ]
    last = conv["messages"][-1]
    assert last["ttft_ms"] is not None and last["total_ms"] is not None and last["status"] == "complete"
    assert last["content"].endswith("second") and "turn=2" in last["content"]
    assert conv["title"] == "第一句"
    # the engine saw the whole conversation
    assert [m["role"] for m in echo_engine.seen[-1].messages] == ["user", "assistant", "user"]


def test_video_reaches_engine_in_every_later_turn(app, make_user, small_clip, echo_engine):
    a = make_user()
    up = a.upload(small_clip, name="猫.mp4").json()
    assert up["duration_s"] and up["width"] == 160 and up["height"] == 120
    cid = a.conversation()
    ev = a.say(cid, "这个视频的隐喻是什么？", upload_ids=[up["id"]])
    assert "videos=1" in "".join(t["text"] for t in ev["token"])
    a.say(cid, "再解释一下")
    msgs = echo_engine.seen[-1].messages
    first = msgs[0]["content"]
    assert first[0]["type"] == "video" and first[0]["video"].endswith(".mp4")
    assert str(app.state.vmeta.uploads_dir) in first[0]["video"]
    conv = a.get(f"/api/conversations/{cid}").json()
    assert conv["messages"][0]["parts"] == [{"type": "video", "upload_id": up["id"], "filename": "猫.mp4"}]


def test_unknown_model_and_foreign_upload_and_empty(make_user):
    a, b = make_user(), make_user()
    cid = a.conversation()
    r = a.post(f"/api/conversations/{cid}/messages", json={"text": "x", "model": "gpt-9"})
    assert r.status_code == 400 and "echo" in r.json()["detail"]
    r = a.post(f"/api/conversations/{cid}/messages", json={"text": "x", "upload_ids": ["0" * 32]})
    assert r.status_code == 404
    r = a.post(f"/api/conversations/{cid}/messages", json={"text": "  "})
    assert r.status_code == 400
    assert b.get(f"/api/conversations/{cid}").status_code == 404


def test_long_text_input(make_user, settings):
    a = make_user()
    cid = a.conversation()
    text = "长" * 60_000
    ev = a.say(cid, text)
    assert ev["done"]
    assert a.get(f"/api/conversations/{cid}").json()["messages"][0]["content"] == text
    r = a.post(f"/api/conversations/{cid}/messages", json={"text": "x" * (settings.max_message_chars + 1)})
    assert r.status_code == 413


def test_list_paginate_search_rename_delete(make_user):
    a = make_user()
    ids = []
    for i in range(5):
        cid = a.conversation(f"topic {i}")
        ids.append(cid)
    a.say(ids[1], "a 50%_discount Metaphor about Cats")
    page = a.get("/api/conversations?limit=2").json()
    assert page["total"] == 5 and len(page["items"]) == 2 and page["next_offset"] == 2
    assert page["items"][0]["id"] == ids[1]  # most recently active first
    rest = a.get("/api/conversations?limit=10&offset=2").json()
    assert len(rest["items"]) == 3 and rest["next_offset"] is None
    assert [c["id"] for c in a.get("/api/conversations?q=metaphor about cats").json()["items"]] == [ids[1]]
    assert [c["id"] for c in a.get("/api/conversations?q=TOPIC 3").json()["items"]] == [ids[3]]
    assert [c["id"] for c in a.get("/api/conversations?q=50%_d").json()["items"]] == [ids[1]]
    assert a.get("/api/conversations?q=5_%").json()["total"] == 0  # LIKE wildcards are literal
    assert a.patch(f"/api/conversations/{ids[0]}", json={"title": "新标题"}).json()["title"] == "新标题"
    assert a.get("/api/conversations?q=新标题").json()["items"][0]["id"] == ids[0]
    assert a.delete(f"/api/conversations/{ids[0]}").status_code == 204
    assert a.get(f"/api/conversations/{ids[0]}").status_code == 404
    assert a.get("/api/conversations").json()["total"] == 4


def test_export_json_and_markdown(make_user, small_clip):
    a = make_user()
    up = a.upload(small_clip, name="clip.mp4").json()
    cid = a.conversation("导出")
    a.say(cid, "看这个", upload_ids=[up["id"]], model="echo:lora")
    r = a.get(f"/api/conversations/{cid}/export?format=json")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    data = json.loads(r.text)
    assert data["title"] == "导出" and len(data["messages"]) == 2 and data["messages"][1]["adapter"] == "lora"
    md = a.get(f"/api/conversations/{cid}/export?format=md").text
    assert md.startswith("# 导出") and "[video: clip.mp4]" in md and "adapter lora" in md and "first token" in md
    assert a.get(f"/api/conversations/{cid}/export?format=pdf").status_code == 422


def test_upload_range_list_delete(app, make_user, small_clip):
    a = make_user()
    up = a.upload(small_clip).json()
    size = small_clip.stat().st_size
    assert up["size_bytes"] == size and up["url"] == f"/api/uploads/{up['id']}"
    r = a.get(up["url"], headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100 and r.headers["content-range"] == f"bytes 0-99/{size}"
    assert a.get(up["url"]).content == small_clip.read_bytes()
    stored = list((app.state.vmeta.uploads_dir / a.user_id).iterdir())
    assert len(stored) == 1 and stored[0].name != small_clip.name and len(stored[0].stem) == 32
    assert a.get("/api/uploads").json()[0]["id"] == up["id"]
    assert a.get(f"/api/uploads/{up['id']}/info").json()["filename"] == small_clip.name
    assert a.delete(up["url"]).status_code == 204
    assert not list((app.state.vmeta.uploads_dir / a.user_id).iterdir())
    assert a.get(up["url"]).status_code == 404


def test_mpeg_ts_upload_is_stored_and_served_as_ts(app, make_user, tmp_path):
    from vmeta.testing import media

    a = make_user()
    up = a.upload(media.make_clip(tmp_path / "live.ts", 160, 120, 10, 1.0, audio=False)).json()
    (stored,) = (app.state.vmeta.uploads_dir / a.user_id).iterdir()
    assert stored.suffix == ".ts"
    assert a.get(up["url"]).headers["content-type"] == "video/mp2t"


def test_duration_and_resolution_limits(app, make_user, small_clip):
    a = make_user()
    s = app.state.vmeta.settings
    s.upload_max_duration_s = 0.5
    r = a.upload(small_clip)
    assert r.status_code == 422 and "limit is" in r.json()["detail"]
    s.upload_max_duration_s = 600
    s.upload_max_pixels = 100 * 100
    r = a.upload(small_clip)
    assert r.status_code == 422 and "160x120" in r.json()["detail"]


def test_avatar_reencoded_owner_only(app, make_user, tmp_path):
    from PIL import Image

    a = make_user()
    jpg = tmp_path / "me.jpg"
    Image.new("RGB", (1200, 800), "blue").save(jpg, quality=80)
    with jpg.open("rb") as fh:
        r = a.post("/api/users/me/avatar", files={"file": ("me.jpg", fh, "image/jpeg")})
    assert r.status_code == 201
    got = a.get(r.json()["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.content[:4] == b"\x89PNG"
    import io

    assert max(Image.open(io.BytesIO(got.content)).size) <= app.state.vmeta.settings.avatar_size
    assert a.get("/api/auth/me").json()["avatar_url"] == r.json()["url"]
    with (tmp_path / "me.jpg").open("rb") as fh:
        bad = a.post("/api/users/me/avatar", files={"file": ("x.png", b"not an image", "image/png")})
    assert bad.status_code == 415
    assert a.get("/api/auth/me").json()["avatar_url"] == r.json()["url"]


def test_models_listed(client, make_user):
    a = make_user()
    models = a.get("/api/models").json()
    assert [m["id"] for m in models] == ["echo", "echo:lora"] and models[0]["default"] is True
    assert models[1]["adapter"] == "lora"
    assert all(m["available"] and m["reason"] is None for m in models)


def test_variants_that_cannot_be_served_are_listed_with_the_reason(app, make_user):
    from vmeta.serve.engine_api import ModelInfo

    reason = "trained on Qwen/Qwen2.5-VL-3B-Instruct, but this server's base model is echo"
    app.state.vmeta.engine.unavailable = lambda: [(ModelInfo("echo:r3b", "echo", "r3b", "adapter"), reason)]
    a = make_user()
    models = a.get("/api/models").json()
    assert [(m["id"], m["available"]) for m in models] == [("echo", True), ("echo:lora", True), ("echo:r3b", False)]
    assert models[2]["reason"] == reason and not models[2]["default"]
