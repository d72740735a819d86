"""The chat page is a set of plain ES modules (static/chat/*.js, no build step): every module the page imports
is served from the app itself as JavaScript, which the page's CSP (`script-src 'self'`) allows, and no file in
static/chat is left out of the import graph. In a real browser: the parts of the page that the other browser
tests do not drive — renaming from the conversation head, the admin dialog, the history dialog's search, Escape.
"""

from __future__ import annotations

import re

import pytest
from chat_page import T, _open, _wait_done
from serve_helpers import PASSWORD

from vmeta.web.common import STATIC_DIR

IMPORT = re.compile(r'^import\b[^;]*?\bfrom\s*"([^"]+)"|^import\s*"([^"]+)"', re.MULTILINE)


def test_every_chat_module_is_served_by_the_app_and_allowed_by_its_csp(client):
    page = client.get("/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    entries = re.findall(r'<script type="module" src="([^"]+)"></script>', page.text)
    assert entries == ["/static/chat/chat.js"]
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        assert path.startswith("/static/") and path.endswith(".js"), path  # same origin, no CDN
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/javascript"), (path, r.headers["content-type"])
        todo += [a or b for a, b in IMPORT.findall(r.text)]
    chat = {f"/static/chat/{p.name}" for p in (STATIC_DIR / "chat").glob("*.js")}
    assert chat <= seen, f"not imported by the page: {sorted(chat - seen)}"


@pytest.mark.browser
def test_rename_admin_dialog_history_search_and_escape(new_page, serve):
    from playwright.sync_api import expect

    url = serve()
    page = new_page()
    _open(page, url)
    # the first account is the admin
    page.locator("#tab-register").click()
    page.locator("#register-email").fill("root@example.org")
    page.locator("#register-password").fill(PASSWORD)
    page.locator("#register-submit").click()
    expect(page.locator("#app")).to_be_visible(timeout=T)
    page.locator("#input").fill("第一个问题")
    page.locator("#send-btn").click()
    _wait_done(page, 0)

    # rename from the conversation head: the title and the sidebar follow
    page.locator("#conv-rename").click()
    expect(page.locator("#dlg-rename")).to_be_visible()
    page.locator("#rename-input").fill("改过的标题")
    page.locator("#rename-input").press("Enter")
    expect(page.locator("#conv-title")).to_have_text("改过的标题", timeout=T)
    expect(page.locator(".conv-item.active .conv-item-title")).to_have_text("改过的标题")

    # the admin dialog: the account and its usage
    page.locator("#user-btn").click()
    expect(page.locator("#menu-admin")).to_be_visible()
    page.locator("#menu-admin").click()
    expect(page.locator("#dlg-admin")).to_be_visible()
    expect(page.locator("#admin-users tr")).to_have_count(2, timeout=T)
    expect(page.locator("#admin-users")).to_contain_text("root@example.org")
    expect(page.locator("#admin-users button")).to_be_disabled()  # not oneself
    expect(page.locator("#admin-usage")).to_contain_text("echo", timeout=T)
    page.locator("#dlg-admin [data-close]").click()
    expect(page.locator("#dlg-admin")).to_be_hidden()

    # the history dialog's search
    page.locator("#user-btn").click()
    page.locator("#menu-history").click()
    expect(page.locator("#history-list .history-row")).to_have_count(1, timeout=T)
    page.locator("#history-search").fill("没有这个")
    expect(page.locator("#history-list .list-empty")).to_be_visible(timeout=T)
    page.locator("#history-search").fill("改过")
    expect(page.locator("#history-list .history-row")).to_have_count(1, timeout=T)
    page.locator("#dlg-history [data-close]").click()

    # Escape closes the user menu
    page.locator("#user-btn").click()
    expect(page.locator("#user-dropdown")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#user-dropdown")).to_be_hidden()
    expect(page.locator("#user-btn")).to_have_attribute("aria-expanded", "false")
    assert not page.errors, page.errors
