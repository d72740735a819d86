"""The chat page of `vmeta serve` in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium)
against a real uvicorn server (a thread, ephemeral 127.0.0.1 port, SQLite in a temp data dir) with the
EchoEngine, whose answer names the model ("echo[echo:lora] turn=2 videos=1 ...") and streams word by word.

Covers: register, log in, guest chat (and registering keeps it), video upload, a refused upload, switching model
mid-conversation, the response times under an answer, reload restores the conversation, log out (the old session
is dead), Chinese by default / English toggle, a phone-sized screen, the queue position, the stop button.

Skipped when Chromium is missing, unless $CI is set (then a missing browser is a failure). Screenshots go to the
test's tmp dir, and to $VMETA_SCREENSHOT_DIR when set.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from chat_page import PHONE, T, _answer, _guest, _open, _shot, _wait_done
from serve_helpers import PASSWORD

from vmeta.serve.echo_engine import EchoEngine
from vmeta.serve.engine_api import ModelInfo
from vmeta.testing import media

pytestmark = pytest.mark.browser


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return media.make_clip(tmp_path_factory.mktemp("chat_clips") / "clip.mp4", 160, 120, 10, 1.0, audio=False)


# ------------------------------------------------------------------------------------------------ tests
def test_register_upload_switch_model_reload_logout_login(new_page, serve, clip, tmp_path):
    from playwright.sync_api import expect

    url = serve()
    page = new_page()
    _open(page, url)
    # Chinese by default (the browser's locale is English), the welcome panel with both forms and guest mode
    expect(page.locator("#welcome h1")).to_have_text("短视频隐喻聊天助手")
    expect(page.locator("#tab-login")).to_have_text("登录")
    expect(page.locator("#guest-start")).to_have_text("以游客身份使用")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"

    # register
    page.locator("#tab-register").click()
    page.locator("#register-email").fill("alice@example.org")
    page.locator("#register-password").fill(PASSWORD)
    page.locator("#register-submit").click()
    expect(page.locator("#app")).to_be_visible(timeout=T)
    expect(page.locator("#welcome")).to_be_hidden()
    expect(page.locator("#user-name")).to_have_text("alice@example.org")
    expect(page.locator("#guest-banner")).to_be_hidden()
    expect(page.locator("#model-select")).to_have_value("echo")

    # upload a video: name, size, done
    page.locator("#file-input").set_input_files(str(clip))
    att = page.locator(".attachment")
    expect(att.locator(".att-name")).to_have_text("clip.mp4")
    expect(att.first).to_have_class(re.compile(r"\bdone\b"), timeout=T)
    expect(att.locator(".att-size").first).to_have_text(re.compile(r"\d+(\.\d)? (B|KB)"))

    # Shift+Enter is a new line, Enter sends; the answer streams token by token
    box = page.locator("#input")
    box.click()
    box.type("这个视频的隐喻是什么？")
    box.press("Shift+Enter")
    box.type("请结合画面 逐步 详细 说明")
    assert box.input_value() == "这个视频的隐喻是什么？\n请结合画面 逐步 详细 说明"
    expect(page.locator(".msg")).to_have_count(0)
    box.press("Enter")
    page.wait_for_function(
        "() => { const a = document.querySelector('.msg.assistant');"
        " return a && a.dataset.status === 'streaming' && a.querySelector('.text').textContent.length > 0; }",
        timeout=T,
    )
    expect(page.locator("#stop-btn")).to_be_visible()
    _wait_done(page, 0)
    expect(page.locator("#stop-btn")).to_be_hidden()
    expect(page.locator("#send-btn")).to_be_visible()
    first = _answer(page, 0)
    expect(first.locator(".text")).to_have_text(
        "echo[echo] turn=1 videos=1 images=0: 这个视频的隐喻是什么？\n请结合画面 逐步 详细 说明"
    )
    # model and response times under the answer (thesis Fig. 4.3)
    expect(first.locator(".meta-model")).to_have_text("echo")
    expect(first.locator(".meta-ttft")).to_have_text(re.compile(r"^首字 \d+ ms$|^首字 \d+\.\d\d s$"))
    expect(first.locator(".meta-total")).to_have_text(re.compile(r"^总耗时 \d+ ms$|^总耗时 \d+\.\d\d s$"))
    # the user's message shows the video (a playable player from the owner-only, range-capable endpoint)
    expect(page.locator(".msg.user video")).to_have_count(1)
    expect(page.locator(".msg.user figcaption")).to_have_text("clip.mp4")
    page.wait_for_function("() => document.querySelector('.msg.user video').readyState >= 1", timeout=T)
    expect(page.locator(".attachment")).to_have_count(0)
    # the conversation is in the sidebar, titled from the first line
    expect(page.locator("#conv-list .conv-item.active")).to_have_text(re.compile("这个视频的隐喻是什么？"), timeout=T)

    # switch model mid-conversation: the next answer comes from the adapter
    page.locator("#model-select").select_option("echo:lora")
    box.fill("换成微调模型再回答一次")
    page.locator("#send-btn").click()
    _wait_done(page, 1)
    second = _answer(page, 1)
    expect(second.locator(".text")).to_have_text("echo[echo:lora] turn=2 videos=0 images=0: 换成微调模型再回答一次")
    expect(second.locator(".meta-model")).to_have_text("echo:lora")
    expect(first.locator(".meta-model")).to_have_text("echo")
    expect(second.locator(".meta-total")).to_contain_text("总耗时")
    shot = _shot(page, tmp_path, "chat-desktop.png")
    assert shot.stat().st_size > 10_000

    # reload: still logged in, the conversation restored from the server, the model choice remembered
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=T)
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator(".msg")).to_have_count(4)
    expect(_answer(page, 0).locator(".meta-model")).to_have_text("echo")
    expect(_answer(page, 1).locator(".meta-model")).to_have_text("echo:lora")
    expect(_answer(page, 1).locator(".meta-ttft")).to_contain_text("首字")
    expect(page.locator(".msg.user video")).to_have_count(1)
    expect(page.locator("#conv-title")).to_have_text("这个视频的隐喻是什么？")
    expect(page.locator("#conv-list .conv-item")).to_have_count(1)
    expect(page.locator("#model-select")).to_have_value("echo:lora")
    # search in the sidebar: by message text; nothing for an unknown word
    page.locator("#conv-search").fill("微调模型")
    expect(page.locator("#conv-list .conv-item")).to_have_count(1)
    page.locator("#conv-search").fill("没有这个词")
    expect(page.locator("#conv-list .conv-item")).to_have_count(0)
    expect(page.locator("#conv-list")).to_contain_text("没有匹配的对话")
    page.locator("#conv-search").fill("")
    expect(page.locator("#conv-list .conv-item")).to_have_count(1)

    # history dialog from the user menu: rename there, export link present
    page.locator("#user-btn").click()
    page.locator("#menu-history").click()
    row = page.locator("#history-list .history-row")
    expect(row).to_have_count(1)
    expect(row.locator("a", has_text="Markdown")).to_have_attribute("href", re.compile(r"format=md$"))
    row.get_by_role("button", name="重命名").click()
    page.locator("#rename-input").fill("我的第一段视频")
    page.locator("#rename-input").press("Enter")
    expect(row.locator(".conv-item-title")).to_have_text("我的第一段视频")
    page.locator("#dlg-history [data-close]").click()
    expect(page.locator("#conv-title")).to_have_text("我的第一段视频")
    expect(page.locator("#conv-list .conv-item")).to_have_text(re.compile("我的第一段视频"))
    md = page.request.get(url + page.locator("#conv-export-md").get_attribute("href"))
    assert md.ok and "echo:lora" in md.text() and "# 我的第一段视频" in md.text()

    # log out: back to the welcome panel; the old session is dead on the server
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "vmeta_session")
    page.locator("#user-btn").click()
    page.locator("#menu-logout").click()
    expect(page.locator("#welcome")).to_be_visible(timeout=T)
    expect(page.locator("#app")).to_be_hidden()
    r = httpx.get(url + "/api/auth/me", cookies={"vmeta_session": session})
    assert r.status_code == 401, r.text

    # log in again: the conversation is back
    page.locator("#login-email").fill("alice@example.org")
    page.locator("#login-password").fill("wrong password")
    page.locator("#login-submit").click()
    expect(page.locator("#login-error")).to_have_text("邮箱或密码错误。")  # the server's sentence, in Chinese
    page.locator("#login-password").fill(PASSWORD)
    page.locator("#login-submit").click()
    expect(page.locator("#app")).to_be_visible(timeout=T)
    expect(page.locator(".msg")).to_have_count(4)
    expect(page.locator("#conv-title")).to_have_text("我的第一段视频")
    assert not page.errors, page.errors


def test_guest_chat_then_register_keeps_the_conversation(new_page, serve, tmp_path):
    from playwright.sync_api import expect

    url = serve()
    page = new_page()
    _guest(page, url)
    expect(page.locator("#guest-banner")).to_be_visible()
    expect(page.locator("#guest-text")).to_contain_text("游客模式")
    expect(page.locator("#user-name")).to_have_text("游客")
    guest_id = page.request.get(url + "/api/auth/me").json()["user"]["id"]

    page.locator("#input").fill("你好，聊天助手")
    page.locator("#send-btn").click()
    _wait_done(page, 0)
    expect(_answer(page, 0).locator(".text")).to_have_text("echo[echo] turn=1 videos=0 images=0: 你好，聊天助手")

    page.locator("#guest-register").click()
    page.locator("#upgrade-email").fill("bob@example.org")
    page.locator("#upgrade-password").fill("short")
    page.locator("#upgrade-submit").click()
    expect(page.locator("#upgrade-error")).to_have_text("密码至少需要 8 位。")
    page.locator("#upgrade-password").fill(PASSWORD)
    page.locator("#upgrade-submit").click()
    expect(page.locator("#guest-banner")).to_be_hidden(timeout=T)
    expect(page.locator("#user-name")).to_have_text("bob@example.org")
    me = page.request.get(url + "/api/auth/me").json()
    assert me["user"]["id"] == guest_id and not me["user"]["is_guest"]
    # the new session's CSRF token is used from now on: a second turn in the same conversation works
    page.locator("#input").fill("第二轮")
    page.locator("#input").press("Enter")
    _wait_done(page, 1)
    expect(_answer(page, 1).locator(".text")).to_have_text("echo[echo] turn=2 videos=0 images=0: 第二轮")
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=T)
    expect(page.locator(".msg")).to_have_count(4)
    expect(page.locator("#guest-banner")).to_be_hidden()

    # avatar from the user menu: re-encoded by the server, shown top-right
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "me.png")
    page.locator("#user-btn").click()
    with page.expect_response(lambda r: r.url.endswith("/api/users/me/avatar")) as info:
        page.locator("#menu-avatar").click()  # opens the (hidden) file input
        page.locator("#avatar-input").set_input_files(str(tmp_path / "me.png"))
    assert info.value.status == 201
    expect(page.locator("#avatar img")).to_have_attribute("src", re.compile(r"^/api/avatars/"))
    page.wait_for_function("() => document.querySelector('#avatar img').naturalWidth > 0", timeout=T)

    # change password: a wrong current password is refused with the server's message, then it works
    page.locator("#user-btn").click()
    page.locator("#menu-password").click()
    page.locator("#pw-current").fill("not my password")
    page.locator("#pw-new").fill("another good password")
    page.locator("#pw-repeat").fill("another good password")
    page.locator("#password-form button[type=submit]").click()
    expect(page.locator("#password-error")).to_have_text("当前密码不正确。")
    page.locator("#pw-current").fill(PASSWORD)
    page.locator("#password-form button[type=submit]").click()
    expect(page.locator("#dlg-password")).to_be_hidden()
    expect(page.locator("#toast")).to_contain_text("密码已修改")

    # delete the conversation from its header (after a confirmation)
    page.locator("#conv-delete").click()
    expect(page.locator("#confirm-text")).to_contain_text("你好，聊天助手")
    page.locator("#confirm-ok").click()
    expect(page.locator("#conv-list .conv-item")).to_have_count(0)
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#empty-state")).to_be_visible()
    assert page.request.get(url + "/api/conversations").json()["total"] == 0
    assert not page.errors, page.errors


def test_refused_upload_shows_the_server_message_and_english_toggle(new_page, serve, tmp_path):
    from playwright.sync_api import expect

    engine = EchoEngine(delay_s=0.03)
    reason = "trained on Qwen/Qwen2.5-VL-3B-Instruct, but this server's base model is echo"
    engine.unavailable = lambda: [(ModelInfo("echo:r3b", "echo", "r3b", "adapter"), reason)]  # type: ignore[attr-defined]
    url = serve(engine)
    page = new_page()
    _open(page, url)
    expect(page.locator("#guest-start")).to_have_text("以游客身份使用")
    page.locator("#welcome .lang-toggle").click()
    expect(page.locator("#guest-start")).to_have_text("Continue as a guest")
    expect(page.locator("#welcome h1")).to_have_text("Short-video metaphor assistant")
    page.reload()  # the choice is remembered
    page.wait_for_selector("body[data-ready='1']", timeout=T)
    expect(page.locator("#guest-start")).to_have_text("Continue as a guest")
    page.locator("#guest-start").click()
    expect(page.locator("#app")).to_be_visible(timeout=T)
    expect(page.locator("#send-btn")).to_have_text("Send")
    expect(page.locator("#guest-text")).to_contain_text("Guest mode")

    fake = media.make_not_video(tmp_path / "notes.mp4")
    with page.expect_response(lambda r: "/api/uploads" in r.url and r.request.method == "POST") as info:
        page.locator("#file-input").set_input_files(str(fake))
    assert info.value.status == 415
    assert "model=echo" in info.value.url  # the page names the selected model so the server can read ahead
    detail = info.value.json()["detail"]
    assert "notes.mp4" in detail and "is not a video file" in detail  # the English page gets English
    expect(page.locator(".attachment.error .att-error")).to_have_text(detail, timeout=T)
    expect(page.locator(".attachment.error .att-name")).to_have_text("notes.mp4")
    expect(page.locator("#send-btn")).to_be_disabled()
    page.locator(".attachment .att-remove").click()
    expect(page.locator(".attachment")).to_have_count(0)

    # back to Chinese from the top bar; dynamic texts follow
    page.locator("#lang-toggle-top").click()
    expect(page.locator("#send-btn")).to_have_text("发送")
    expect(page.locator("#guest-text")).to_contain_text("游客模式")
    expect(page.locator("#model-select option").first).to_have_text("echo · 基座模型")
    # a variant the server found but cannot serve is shown greyed out, with the reason on hover
    blocked = page.locator("#model-select option[value='echo:r3b']")
    expect(blocked).to_have_text("echo:r3b · 不可用")
    expect(blocked).to_be_disabled()
    expect(blocked).to_have_attribute("title", reason)
    expect(page.locator("#model-select")).to_have_value("echo")
    assert not page.errors, page.errors


def test_errors_shown_earlier_follow_a_language_switch(new_page, serve, tmp_path):
    """A server error (login, upload) and a page-made one (empty field) are drawn again in the new language."""
    from playwright.sync_api import expect

    url = serve()
    page = new_page()
    _open(page, url)
    page.locator("#login-email").fill("nobody@example.org")
    page.locator("#login-password").fill("wrong password")
    page.locator("#login-submit").click()
    expect(page.locator("#login-error")).to_have_text("邮箱或密码错误。", timeout=T)
    page.locator("#welcome .lang-toggle").click()
    expect(page.locator("#login-error")).to_have_text("wrong e-mail or password.", timeout=T)
    page.locator("#login-password").fill("")
    page.locator("#login-submit").click()
    english_fill_in = page.locator("#login-error").inner_text()
    page.locator("#welcome .lang-toggle").click()  # back to Chinese: the page's own sentence follows too
    expect(page.locator("#login-error")).not_to_have_text(english_fill_in, timeout=T)

    page.locator("#guest-start").click()
    expect(page.locator("#app")).to_be_visible(timeout=T)
    fake = media.make_not_video(tmp_path / "notes.mp4")
    page.locator("#file-input").set_input_files(str(fake))
    expect(page.locator(".attachment.error .att-error")).to_have_text(
        "“notes.mp4”不是视频文件，请上传 MP4、MOV、MKV 或 WebM 视频。", timeout=T
    )
    page.locator("#lang-toggle-top").click()
    expect(page.locator(".attachment.error .att-error")).to_contain_text("'notes.mp4' is not a video file", timeout=T)
    assert not page.errors, page.errors


def test_progress_before_the_first_word(new_page, serve, clip, tmp_path):
    """Stages (reading the video, looking at its frames, reading the conversation, writing) are shown with the
    time elapsed before the first token, in Chinese and English; the answer then says what the model read."""
    from playwright.sync_api import expect

    url = serve(EchoEngine(delay_s=0.03, stage_delay_s=0.8))
    page = new_page()
    _guest(page, url)
    page.locator("#file-input").set_input_files(str(clip))
    expect(page.locator(".attachment .att-status.ok")).to_be_visible(timeout=T)
    page.locator("#input").fill("这个视频的隐喻是什么？")
    page.locator("#send-btn").click()
    status = _answer(page, 0).locator(".status-line .stage-text")
    expect(status).to_contain_text("读取视频：8 帧", timeout=T)
    expect(status).to_contain_text("看视频画面：4/8 帧", timeout=T)
    expect(status).to_contain_text(" 秒")
    expect(status).to_contain_text("阅读对话：0/84 词元", timeout=T)
    _shot(page, tmp_path, "chat-stage.png")
    _wait_done(page, 0)
    expect(_answer(page, 0).locator(".status-line")).to_be_hidden()
    meta = _answer(page, 0).locator(".answer-meta")
    expect(meta.locator(".meta-frames")).to_have_text("8 帧")
    expect(meta.locator(".meta-visual")).to_have_text("视觉词元 64")

    page.locator("#lang-toggle-top").click()  # English: the stored answer's facts follow the language
    expect(meta.locator(".meta-frames")).to_have_text("8 frames", timeout=T)
    page.locator("#file-input").set_input_files(str(clip))
    expect(page.locator(".attachment .att-status.ok")).to_be_visible(timeout=T)
    page.locator("#input").fill("and again?")
    page.locator("#send-btn").click()
    expect(_answer(page, 1).locator(".status-line .stage-text")).to_contain_text(
        "Reading the video: 8 frames", timeout=T
    )
    _wait_done(page, 1)
    assert not page.errors, page.errors


def test_phone_sized_screen(new_page, serve, tmp_path):
    from playwright.sync_api import expect

    url = serve()
    page = new_page(PHONE)
    _open(page, url)
    _shot(page, tmp_path, "chat-phone-welcome.png")
    page.locator("#guest-start").click()
    expect(page.locator("#app")).to_be_visible(timeout=T)
    # the sidebar is collapsed behind a button
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#sidebar-open")).to_be_visible()
    for sel in ("#model-select", "#user-btn", "#input", "#upload-btn", "#send-btn"):
        box = page.locator(sel).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, (sel, box)
    page.locator("#input").fill("手机上也能聊天吗？")
    page.locator("#send-btn").click()
    _wait_done(page, 0)
    expect(_answer(page, 0).locator(".meta-total")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    _shot(page, tmp_path, "chat-phone.png")
    # the drawer opens over the page and closes after picking a conversation
    page.locator("#sidebar-open").click()
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator("#conv-list .conv-item")).to_have_count(1)
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().left >= 0", timeout=T)
    _shot(page, tmp_path, "chat-phone-drawer.png")
    page.locator("#conv-list .conv-item").click()
    expect(page.locator("#sidebar")).to_be_hidden()
    # the user menu fits on the screen
    page.locator("#user-btn").click()
    menu = page.locator("#user-dropdown").bounding_box()
    assert menu["x"] >= 0 and menu["x"] + menu["width"] <= PHONE["width"] + 0.5, menu
    assert not page.errors, page.errors


def test_queue_position_and_stop(new_page, serve, tmp_path):
    from playwright.sync_api import expect

    url = serve(EchoEngine(delay_s=0.12, concurrency=1))
    a, b = new_page(), new_page()
    _guest(a, url)
    _guest(b, url)
    words = " ".join(f"w{i}" for i in range(12))  # ~17 tokens x 0.12 s: A holds the engine for ~2 s
    a.locator("#input").fill(words)
    a.locator("#send-btn").click()
    a.wait_for_function(
        "() => { const x = document.querySelector('.msg.assistant .text'); return x && x.textContent.length > 0; }",
        timeout=T,
    )
    b.locator("#input").fill("我在排队吗？")
    b.locator("#send-btn").click()
    expect(b.locator(".msg.assistant .status-line.queued")).to_have_text("排队中：第 1 位", timeout=T)
    _shot(b, tmp_path, "chat-queued.png")
    _wait_done(a, 0)
    _wait_done(b, 0)
    expect(_answer(b, 0).locator(".text")).to_have_text("echo[echo] turn=1 videos=0 images=0: 我在排队吗？")
    expect(_answer(b, 0).locator(".status-line")).to_be_hidden()

    # stop: the fetch is aborted, the page says so, the server keeps the partial answer as "interrupted"
    a.locator("#input").fill(words)
    a.locator("#input").press("Enter")
    a.wait_for_function(
        "() => { const x = document.querySelectorAll('.msg.assistant .text')[1]; return x && x.textContent.length > 0; }",
        timeout=T,
    )
    a.locator("#stop-btn").click()
    expect(_answer(a, 1)).to_have_attribute("data-status", "interrupted")
    expect(_answer(a, 1).locator(".answer-notice")).to_have_text("已停止生成，已生成的部分已保存。")
    expect(a.locator("#send-btn")).to_be_visible()
    conv = a.request.get(url + "/api/conversations").json()["items"][0]["id"]
    deadline = time.monotonic() + 10
    while True:
        msgs = a.request.get(f"{url}/api/conversations/{conv}").json()["messages"]
        if len(msgs) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [m["status"] for m in msgs if m["role"] == "assistant"] == ["complete", "interrupted"]
    assert not a.errors and not b.errors, (a.errors, b.errors)
