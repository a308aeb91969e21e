"""Shared pieces of the browser tests: a real uvicorn serving the app (as the app role) on a free
127.0.0.1 port whose configured origin is that port, Debian's Chromium through Playwright, a recorder
of requests and errors, and signing in on /login with the keyboard and mouse."""

from __future__ import annotations

import shutil
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlparse, urlsplit

import pytest
import uvicorn
from auth_helpers import USER_PASSWORD, app_engine
from playwright.sync_api import sync_playwright

from gisgov.api.app import create_app
from gisgov.config import Settings, get_settings
from gisgov.db.cluster import free_port
from gisgov.maps.assets import ensure_assets

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def serve(owner_url: str, **settings):
    """uvicorn serving the app on a free 127.0.0.1 port in a thread; stopped on exit. ``settings``
    are extra ``Settings`` fields (host and port are this server's, so the sign-in origin matches)."""
    ensure_assets(get_settings().web_dir)
    port = free_port()
    engine = app_engine(owner_url)
    app = create_app(Settings(host="127.0.0.1", port=port, **settings), engine=engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        engine.dispose()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Recorder:
    def __init__(self, page):
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", lambda r: self.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)

    def off_host(self) -> list[str]:
        # a blob: URL names the origin that made it (blob:http://127.0.0.1:PORT/uuid): judged by that origin
        return [
            u
            for u in self.requests
            if not u.startswith("data:") and urlparse(u.removeprefix("blob:")).hostname != "127.0.0.1"
        ]


def sign_in(page, base: str, path: str, username: str, password: str = USER_PASSWORD) -> None:
    """Open ``path``, get sent to the sign-in page, type the credentials with the keyboard, click 登录,
    and land back on ``path``."""
    page.goto(f"{base}{path}")
    page.wait_for_url(lambda u: urlsplit(u).path == "/login" and "next=" in u, timeout=20000)
    page.locator("#username").click()
    page.keyboard.type(username)
    page.locator("#password").click()
    page.keyboard.type(password)
    page.locator("#login-submit").click()
    want = urlsplit(f"{base}{path}")
    page.wait_for_url(lambda u: urlsplit(u).path == want.path, timeout=20000)
