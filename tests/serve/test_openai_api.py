"""The OpenAI-compatible API driven by the official `openai` client against a real uvicorn server, plus the
streaming behaviours that need a real server (queue positions, client disconnects)."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import openai
import pytest
from serve_helpers import PASSWORD


def browser_user(base: str, email: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=30)
    r = c.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


@pytest.fixture
def api(live):
    web = browser_user(live, "api-user@example.org")
    token = web.post("/api/tokens", json={"name": "openai"}).json()["token"]
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=token, max_retries=0, timeout=30)
    yield client, web, token
    web.close()
    client.close()


def test_models_and_non_stream(api):
    client, _, _ = api
    assert [m.id for m in client.models.list().data] == ["echo", "echo:lora"]
    out = client.chat.completions.create(
        model="echo:lora", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "你好"}]
    )
    assert out.choices[0].message.content == "echo[echo:lora] turn=1 videos=0 images=0: 你好"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.completion_tokens == 5 and out.usage.total_tokens == out.usage.prompt_tokens + 5


def test_stream_with_usage(api):
    client, _, _ = api
    chunks = list(
        client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo[echo] turn=1 videos=0 images=0: a b c"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "stop"


def test_video_by_upload_id_and_data_url(api, small_clip, tmp_path):
    client, web, token = api
    with small_clip.open("rb") as fh:
        up = httpx.post(
            f"{web.base_url}/api/uploads",
            files={"file": ("c.mp4", fh, "video/mp4")},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    for ref in (f"vmeta-upload://{up['id']}", up["id"]):
        out = client.chat.completions.create(
            model="echo",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "video_url", "video_url": {"url": ref}}, {"type": "text", "text": "隐喻?"}],
                }
            ],
        )
        assert "videos=1" in out.choices[0].message.content
    data = "data:video/mp4;base64," + base64.b64encode(small_clip.read_bytes()).decode()
    from PIL import Image

    png = tmp_path / "p.png"
    Image.new("RGB", (8, 8), "white").save(png)
    img = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    out = client.chat.completions.create(
        model="echo",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": data}},
                    {"type": "image_url", "image_url": {"url": img}},
                    {"type": "text", "text": "both"},
                ],
            }
        ],
    )
    assert "videos=1 images=1: both" in out.choices[0].message.content
    tmp = web.base_url  # temp files of data: URLs are gone after the request
    del tmp


def test_api_errors_are_helpful(api, live, bad_videos):
    client, _, _ = api
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "gpt-4o" in str(e.value) and "echo" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="echo",
            messages=[
                {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}}]}
            ],
        )
    assert "remote URLs" in str(e.value)
    bad = "data:video/mp4;base64," + base64.b64encode(bad_videos["not_video"].read_bytes()).decode()
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": bad}}]}]
        )
    assert e.value.status_code == 415 and "not a video" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="echo", messages=[])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live}/v1", api_key="vmt_wrong", max_retries=0).models.list()
    r = httpx.get(f"{live}/v1/models")
    assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"]


def test_api_empty_video_error_names_its_place_once_and_no_file_dialog(api):
    """The page tells a person to "choose the video file again"; an API client gets where and what to send."""
    client, _, _ = api
    empty = "data:video/mp4;base64,"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": empty}}]}]
        )
    message = e.value.body["message"]
    assert message.startswith("messages[0].content[0]: the video is empty (0 bytes);"), message
    assert message.count("messages[0]") == 1 and "choose" not in message


def test_api_usage_recorded_not_as_conversation(api, live):
    client, web, _ = api
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "count"}])
    list(client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}], stream=True))
    usage = web.get("/api/admin/usage").json()  # the first user is the admin
    api_rows = [u for u in usage if u["source"] == "api"]
    assert api_rows and api_rows[0]["requests"] == 2
    assert web.get("/api/conversations").json()["total"] == 0


def test_anonymous_api_when_allowed(app, live):
    app.state.vmeta.settings.api_allow_anonymous = True
    # no Authorization header at all is anonymous
    r = httpx.post(
        f"{live}/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].endswith("hi")
    # so is a key that is not a vmeta token: the official client must send one ("EMPTY", as for vLLM)
    out = openai.OpenAI(base_url=f"{live}/v1", api_key="EMPTY", max_retries=0)
    answer = out.chat.completions.create(model="echo", messages=[{"role": "user", "content": "匿名"}])
    assert answer.choices[0].message.content.endswith("匿名")
    out.close()
    # a vmeta token is still checked: an unknown or revoked one is refused, not silently anonymous
    bad = openai.OpenAI(base_url=f"{live}/v1", api_key="vmt_revoked0000000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid or revoked"):
        bad.models.list()
    bad.close()
    app.state.vmeta.settings.api_allow_anonymous = False
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live}/v1", api_key="EMPTY", max_retries=0).models.list()


def _sse(lines):
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


def test_queue_position_then_tokens(app, live):
    app.state.vmeta.engine.delay_s = 0.03
    web = browser_user(live, "q@example.org")
    c1 = web.post("/api/conversations", json={}).json()["id"]
    c2 = web.post("/api/conversations", json={}).json()["id"]
    seen = {}

    def run(key, cid):
        with web.stream("POST", f"/api/conversations/{cid}/messages", json={"text": "one two three four five"}) as r:
            seen[key] = [e for e, _ in _sse(r.iter_lines())]

    t = threading.Thread(target=run, args=("first", c1))
    t.start()
    time.sleep(0.1)
    run("second", c2)
    t.join()
    assert "queued" in seen["second"] and seen["second"].index("queued") < seen["second"].index("token")
    assert seen["first"][-1] == "done" and seen["second"][-1] == "done"


def test_disconnect_mid_stream_stores_partial_answer(app, live):
    app.state.vmeta.engine.delay_s = 0.05
    web = browser_user(live, "d@example.org")
    cid = web.post("/api/conversations", json={}).json()["id"]
    words = " ".join(f"w{i}" for i in range(60))
    with web.stream("POST", f"/api/conversations/{cid}/messages", json={"text": words}) as r:
        tokens = 0
        for event, _ in _sse(r.iter_lines()):
            tokens += event == "token"
            if tokens == 3:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msgs = web.get(f"/api/conversations/{cid}").json()["messages"]
        if len(msgs) == 2:
            break
        time.sleep(0.05)
    assert len(msgs) == 2, msgs
    answer = msgs[1]
    assert answer["status"] == "interrupted" and answer["content"].startswith("echo[echo]")
    assert not answer["content"].endswith("w59")
    # the engine slot was freed: the next answer runs at once
    web2 = web.post(f"/api/conversations/{cid}/messages", json={"text": "again"})
    assert "event: done" in web2.text


def test_writes_are_committed_before_the_response(live):
    """A client's next request sees what the previous one wrote (the DB session commits before responding)."""
    for i in range(15):
        web = browser_user(live, f"race{i}@example.org")
        cid = web.post("/api/conversations", json={"title": f"t{i}"}).json()["id"]
        assert web.get(f"/api/conversations/{cid}").status_code == 200
        assert web.post("/api/tokens", json={}).status_code == 201
        web.close()
