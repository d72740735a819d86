"""Debian's Chromium driven by Playwright, a uvicorn server in a thread, a free port: what server tests share.

A missing Chromium skips a browser test on a developer machine and fails it in CI (env CI set), so CI can
never go green by not running them.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vmeta.testing.needs import skip_or_fail

CHROMIUM = Path(os.environ.get("VMETA_CHROMIUM", "/usr/bin/chromium"))
# Headless as root in a sandbox-less container, and no background traffic to hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_browser() -> None:
    if not CHROMIUM.exists():
        skip_or_fail(
            f"{CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium) to run browser tests"
        )


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium under Playwright for the length of the block (skipped, or failed in CI, where
    it is missing): what a test's `browser` fixture yields."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on `host`, for a server started in another process."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app: Any, *, lifespan: str = "on") -> Iterator[str]:
    """Run an ASGI app on an ephemeral 127.0.0.1 port; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
