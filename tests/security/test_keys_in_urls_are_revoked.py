"""A key sent in a URL is leaked (access logs, proxies, browser history): it is refused, revoked on the
spot with a ledger event saying why, and the answer says so; and Arbiter's own access log never prints
query strings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from audit.models import LedgerEvent
from routing.models import ApiKey
from tests.api.conftest import client_with

BASE_DIR = Path(__file__).resolve().parents[2]


def _prefix(raw_key: str) -> str:
    return raw_key.removeprefix("arb_").split("_", 1)[0]


@pytest.mark.django_db
@pytest.mark.parametrize("parameter", ["api_key", "key", "token", "access_token"])
def test_a_key_in_the_query_string_is_revoked_and_the_answer_says_so(owner, parameter):
    response = client_with(None).get(f"/api/v1/jobs?{parameter}={owner.key}")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "key_in_url" and "has been revoked" in body["detail"]
    assert body["revoked_keys"] == [f"arb_{_prefix(owner.key)}_…"]
    assert ApiKey.objects.get(prefix=_prefix(owner.key)).revoked_at is not None
    event = LedgerEvent.objects.filter(event_type="api_key.revoked").latest("id")
    assert event.body == {"prefix": _prefix(owner.key), "reason": "exposed in a URL"}
    # The leaked key no longer works anywhere, header or not.
    assert owner.client.get("/api/v1/jobs").status_code == 401


@pytest.mark.django_db
def test_the_openai_endpoint_revokes_too_in_openai_form(owner):
    response = owner.client.post(
        f"/v1/chat/completions?api_key={owner.key}", {"model": "auto", "messages": []}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "key_in_url"
    assert "has been revoked" in response.json()["error"]["message"]
    assert owner.client.get("/api/v1/jobs").status_code == 401


@pytest.mark.django_db
def test_a_value_that_is_no_key_is_refused_and_nothing_is_revoked(owner):
    response = owner.client.get("/api/v1/jobs?token=not-a-key")
    assert response.status_code == 400 and "has been revoked" not in response.json()["detail"]
    assert owner.client.get("/api/v1/jobs").status_code == 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_access_log_never_prints_a_query_string():
    # The Procfile's own web command, as `make run` and production start it.
    web = next(line for line in (BASE_DIR / "Procfile").read_text().splitlines() if line.startswith("web:"))
    port = _free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the venv's gunicorn
    env = {**os.environ, "PATH": path, "PORT": str(port), "ARBITER_BIND": "127.0.0.1", "WEB_CONCURRENCY": "1"}
    server = subprocess.Popen(
        ["bash", "-c", "exec " + web.removeprefix("web:").strip()],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/healthz?api_key=arb_0123456789ab_leakedsecret"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=10)
            except urllib.error.HTTPError:
                pass  # any answer is logged
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
                time.sleep(0.3)
                continue
            break
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    access_lines = [line for line in output.splitlines() if "/healthz" in line]
    assert access_lines, output
    assert "leakedsecret" not in output
    assert "api_key" not in output
