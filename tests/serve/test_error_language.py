"""The page's error sentences come in its language (`X-Vmeta-Lang`); API clients keep English."""

from __future__ import annotations

import re

from serve_helpers import PASSWORD

from vmeta.testing import media
from vmeta.web import error_text

ZH = {"X-Vmeta-Lang": "zh"}


def test_account_errors_in_chinese_and_english(client, make_user):
    make_user("alice@example.org")
    wrong = {"email": "alice@example.org", "password": "wrong password"}
    r = client.post("/api/auth/login", json=wrong, headers=ZH)
    assert (r.status_code, r.json()["detail"]) == (401, "邮箱或密码错误。")
    r = client.post("/api/auth/login", json=wrong)  # no header: the API's English
    assert (r.status_code, r.json()["detail"]) == (401, "wrong e-mail or password.")
    r = client.post("/api/auth/register", json={"email": "alice@example.org", "password": PASSWORD}, headers=ZH)
    assert (r.status_code, r.json()["detail"]) == (409, "“alice@example.org”已经注册，请直接登录。")
    r = client.post("/api/auth/register", json={"email": "b@example.org", "password": "short"}, headers=ZH)
    assert (r.status_code, r.json()["detail"]) == (422, "密码至少需要 8 个字符。")
    for _ in range(6):  # the throttle: the sixth wrong password within the window
        r = client.post("/api/auth/login", json=wrong, headers=ZH)
    assert r.status_code == 429
    assert re.fullmatch(r"密码错误次数过多，请 \d+ 秒后再试。", r.json()["detail"]), r.json()
    assert client.get("/api/conversations", headers=ZH).json()["detail"] == "请先登录，或以访客身份开始。"


def test_upload_errors_in_chinese_name_the_file(make_user, tmp_path):
    a = make_user()
    empty = tmp_path / "空的.mp4"
    empty.write_bytes(b"")
    with open(empty, "rb") as fh:
        r = a.post("/api/uploads", files={"file": (empty.name, fh, "video/mp4")}, headers=ZH)
    assert (r.status_code, r.json()["detail"]) == (400, "“空的.mp4”是空文件（0 字节），请重新选择视频文件。")
    fake = media.make_not_video(tmp_path / "notes.mp4")
    with open(fake, "rb") as fh:
        r = a.post("/api/uploads", files={"file": (fake.name, fh, "video/mp4")}, headers=ZH)
    assert (r.status_code, r.json()["detail"]) == (415, "“notes.mp4”不是视频文件，请上传 MP4、MOV、MKV 或 WebM 视频。")
    assert a.get("/api/conversations/nope", headers=ZH).json()["detail"] == "找不到这个对话。"
    # a sentence the table does not know stays English rather than being lost
    r = a.post("/api/conversations", json={"title": "x" * 1000}, headers=ZH)
    assert r.status_code == 422 and r.json()["detail"].startswith("invalid request — title")


def test_every_translation_fills_from_its_pattern():
    for pattern, text in error_text._ZH_SENTENCES:
        named = set(re.compile(pattern).groupindex)
        assert set(re.findall(r"{(\w+)}", text)) <= named, pattern
        assert re.search(r"[\u4e00-\u9fff]", text), text  # translated, not copied
    assert error_text.localize(
        "the video is larger than the limit of 200 MiB; send a shorter or smaller file.", "zh"
    ) == ("视频超过了 200 MiB 的上限，请发送更短或更小的文件。")
    assert error_text.localize("wrong e-mail or password.", "en") == "wrong e-mail or password."
    assert error_text.localize("wrong e-mail or password.", None) == "wrong e-mail or password."


def test_errors_inside_a_streamed_answer_in_chinese(make_user, echo_engine, monkeypatch):
    from serve_helpers import sse_events

    from vmeta.serve.engine_api import EngineError

    failure: list[Exception] = [EngineError("the video clip.mp4 cannot be read (ValueError).")]

    async def failing(request):
        raise failure[0]
        yield  # an async generator, like the engine's

    monkeypatch.setattr(echo_engine, "stream", failing)
    a = make_user()
    cid = a.conversation()
    ev = sse_events(a.post(f"/api/conversations/{cid}/messages", json={"text": "hi"}, headers=ZH))
    assert ev["error"][0]["detail"] == "视频“clip.mp4”无法读取（ValueError），请重新导出为 H.264 MP4 后再试。"
    assert a.say(cid, "again")["error"][0]["detail"] == "the video clip.mp4 cannot be read (ValueError)."
    failure[0] = RuntimeError("engine bug")
    ev = sse_events(a.post(f"/api/conversations/{cid}/messages", json={"text": "hi"}, headers=ZH))
    assert ev["error"][0]["detail"] == "模型未能回答（RuntimeError），请重试或换一个模型。"
    # stored in English (API clients, exports and logs read it); the page reloading the history gets Chinese
    answers = [m for m in a.get(f"/api/conversations/{cid}").json()["messages"] if m["role"] == "assistant"]
    assert answers[0]["status"] == "error"
    assert answers[0]["timings"]["error"] == "the video clip.mp4 cannot be read (ValueError)."
    answers = [m for m in a.get(f"/api/conversations/{cid}", headers=ZH).json()["messages"] if m["role"] == "assistant"]
    assert answers[0]["timings"]["error"] == "视频“clip.mp4”无法读取（ValueError），请重新导出为 H.264 MP4 后再试。"
    assert answers[2]["timings"]["error"] == "模型未能回答（RuntimeError），请重试或换一个模型。"
    # ...and, for the page to follow a later language switch, every language beside it
    both = {"en": "the video clip.mp4 cannot be read (ValueError).", "zh": answers[0]["timings"]["error"]}
    assert answers[0]["timings"]["error_i18n"] == both
    assert (
        ev["error"][0]["detail_i18n"]["en"]
        == "the model failed to answer (RuntimeError); try again or pick another model."
    )


def test_page_errors_carry_every_language_api_errors_keep_their_shape(client):
    wrong = {"email": "nobody@example.org", "password": "wrong password"}
    r = client.post("/api/auth/login", json=wrong, headers=ZH)
    assert r.json() == {
        "detail": "邮箱或密码错误。",
        "detail_i18n": {"en": "wrong e-mail or password.", "zh": "邮箱或密码错误。"},
    }
    assert client.post("/api/auth/login", json=wrong).json() == {"detail": "wrong e-mail or password."}
