"""A real browser (Debian's Chromium, driven by pytest-playwright) against a live Arbiter on loopback,
with real Celery workers and the local model server behind it. The browser tests live with the app whose
pages they drive; run them all with `pytest -m e2e`, screenshots land in test-results/screenshots/.

The server is Django's threaded WSGI server in a thread of this process. It does not use pytest-django's
`live_server`, which flushes tables at teardown (the ledger refuses TRUNCATE); like the pipeline tests,
everything here commits and every test makes its own application, policy and people.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application

from tests.support.governed import governed

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
PASSWORD = "correct horse battery staple"
# A classification every tier is unsure of: held for approval after the flagship (unsure-after-flagship).
UNSURE = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] Which queue for ticket 4411?"

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between browser
# steps are ordinary blocking calls, which Django would otherwise refuse in a thread with a running loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_FLAGS, "headless": True}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1360, "height": 900}, "locale": "en-GB"}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(scope="session")
def ui_server(test_database) -> Iterator[str]:
    """The whole app (static files included) on a free loopback port, for the session."""
    server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=False)
    server.set_app(StaticFilesHandler(get_wsgi_application()))
    thread = threading.Thread(target=server.serve_forever, name="ui-live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser_setup(model_server, workers, ui_server):
    """A governed set-up on the model server, a worker running, and the live server up."""
    setup = governed(model_server.base_url)
    workers.start()
    return setup


@pytest.fixture
def console_errors(page) -> list[str]:
    """What the browser complained about (a CSP violation is reported here)."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def no_csp_violations(errors: list[str]) -> None:
    assert not [error for error in errors if "Content Security Policy" in error or "Refused to" in error], errors


def shoot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # else the sticky top bar is drawn where the page was scrolled to
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page, base_url: str, user) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login/")
