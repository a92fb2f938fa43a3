"""One application flooding `/v1/chat/completions` with slow calls cannot take the web tier from the
others: beyond its bound it gets 429s with Retry-After, and every web process keeps a thread for other
tenants' API calls and `/healthz`. Run against the Procfile's gunicorn, with a slow local model."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from routing.api import ratelimit
from routing.api.ratelimit import SyncCallsExceeded, sync_call_slot
from routing.models import ApiKey, ModelDeployment
from tests.security.webserver import procfile_web
from tests.support.factories import ApplicationFactory
from tests.support.live import live_arbiter
from tests.support.personas import key_for
from tests.support.workers import database_url_for_workers

SLOW_MS = 8000  # each model call; deployments here wait up to 30 s, so the call is slow, not failed
PER_KEY = 2
THREADS = 4  # the Procfile's default; the per-process bound leaves one of them free
COMPLETION = {
    "model": "auto",
    "messages": [{"role": "user", "content": "[task:classification] Billing or tech?"}],
    "metadata": {"task_type": "classification"},
}


def call(url: str, key: str | None, *, body: dict | None = None, timeout: float = 60) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one request; HTTP errors are answers like any other, and no answer
    within `timeout` is status 0."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")
    except (TimeoutError, urllib.error.URLError) as error:
        return 0, {}, {"no answer": str(error)}


def flood(url: str, keys: list[str], *, while_flooding) -> tuple[list[tuple[int, dict, dict]], list]:
    """Sends one slow completion per entry of `keys` at once; calls `while_flooding()` while they run."""
    with ThreadPoolExecutor(max_workers=len(keys) + 1) as pool:
        calls = [pool.submit(call, f"{url}/v1/chat/completions", key, body=COMPLETION) for key in keys]
        time.sleep(2.0)  # every call has arrived; the admitted ones are inside the slow model call
        others = while_flooding()
        return [future.result() for future in calls], others


@contextmanager
def socket_closed() -> Iterator[int]:
    """A loopback port where nothing listens (bound, never listening: connections are refused)."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        yield placeholder.getsockname()[1]


def refusals(answers) -> list[tuple[int, dict, dict]]:
    return [answer for answer in answers if answer[0] == 429]


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.fixture(scope="module")
def web(arbiter, model_server):
    ModelDeployment.objects.filter(pk__in=[d.pk for d in arbiter.setup.deployments.values()]).update(timeout_s=30)
    env = {
        "DATABASE_URL": database_url_for_workers(),
        "REDIS_URL": settings.REDIS_URL,
        "ARBITER_QUEUE": arbiter.queue,
        "ARBITER_MODELSERVER_URL": model_server.base_url,
        "ARBITER_RATE_LIMIT_PER_MINUTE": "0",
        "ARBITER_SYNC_CALLS_PER_KEY": str(PER_KEY),
        "ARBITER_SYNC_CALLS_TOTAL": "100",
        "WEB_CONCURRENCY": "1",
        "ARBITER_WEB_THREADS": str(THREADS),
    }
    with procfile_web(env) as server:
        yield server


@pytest.fixture
def slow_model(model_server):
    model_server.set_faults("*", slow_ms=SLOW_MS)
    yield
    model_server.reset_faults()


@pytest.mark.django_db
def test_without_redis_the_endpoint_answers_503_with_retry_after(owner, monkeypatch):
    # Also the django_db test that makes pytest-django create the test database for this module.
    with socket_closed() as port:
        monkeypatch.setattr(
            ratelimit, "get_redis", lambda: redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
        )
        response = owner.client.post("/v1/chat/completions", COMPLETION, format="json")
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "service_unavailable"
    assert owner.job_count() == 0


@pytest.mark.django_db
def test_slots_held_by_a_crashed_process_expire(owner, redis_client):
    key = ApiKey.objects.get(prefix=owner.key.removeprefix("arb_").split("_", 1)[0])
    slots = f"arbiter:sync:key:{key.prefix}"
    now_ms = int(time.time() * 1000)
    try:
        # A process that died while holding every slot of this key: its leases ran out a second ago.
        redis_client.zadd(slots, {f"dead-{n}": now_ms - 1000 for n in range(settings.ARBITER_SYNC_CALLS_PER_KEY)})
        with sync_call_slot(key):
            pass
        # Live leases (another web process's calls in flight) do count.
        redis_client.zadd(slots, {f"live-{n}": now_ms + 60_000 for n in range(settings.ARBITER_SYNC_CALLS_PER_KEY)})
        with pytest.raises(SyncCallsExceeded) as exceeded, sync_call_slot(key):
            pass
        assert exceeded.value.limit == "ARBITER_SYNC_CALLS_PER_KEY"
    finally:
        redis_client.delete(slots)


@pytest.mark.django_db
def test_a_finished_call_gives_its_slot_back_in_every_set(owner, redis_client):
    key = ApiKey.objects.get(prefix=owner.key.removeprefix("arb_").split("_", 1)[0])
    sets = (f"arbiter:sync:key:{key.prefix}", "arbiter:sync:total")
    def members() -> list[set[bytes]]:
        return [set(redis_client.zrange(name, 0, -1)) for name in sets]

    before = members()
    with sync_call_slot(key):
        ours = [held - earlier for held, earlier in zip(members(), before, strict=True)]
    assert [len(tokens) for tokens in ours] == [1, 1]
    assert all(not tokens & now for tokens, now in zip(ours, members(), strict=True))


@pytest.mark.django_db
def test_calls_in_flight_in_other_processes_count_toward_the_total(owner, redis_client):
    now_ms = int(time.time() * 1000)
    held = {f"elsewhere-{uuid.uuid4().hex}": now_ms + 60_000 for _ in range(3)}
    redis_client.zadd("arbiter:sync:total", held)
    try:
        with override_settings(ARBITER_SYNC_CALLS_TOTAL=3):
            response = owner.client.post("/v1/chat/completions", COMPLETION, format="json")
    finally:
        redis_client.zrem("arbiter:sync:total", *held)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "concurrency_limit_exceeded" and error["limit"] == "ARBITER_SYNC_CALLS_TOTAL"
    assert error["type"] == "rate_limit_error" and int(response["Retry-After"]) >= 1
    assert owner.job_count() == 0


@pytest.mark.slow
def test_a_flooding_key_gets_429s_while_other_tenants_and_healthz_are_served(arbiter, web, slow_model, live_db):
    other_key = key_for(ApplicationFactory(), "jobs:read", "jobs:write")

    def others():
        # A client timeout shorter than one slow call: without a free thread these would wait for one.
        return [
            call(f"{web.url}/api/v1/jobs", other_key, timeout=SLOW_MS / 1000 - 3)[0],
            call(f"{web.url}/healthz", None, timeout=SLOW_MS / 1000 - 3)[0],
        ]

    answers, other_statuses = flood(web.url, [arbiter.key] * 8, while_flooding=others)
    assert other_statuses == [200, 200], (other_statuses, answers, web.output)
    assert all(0 < status < 500 for status, _, _ in answers), answers
    refused = refusals(answers)
    assert len(refused) == 8 - PER_KEY
    for _, headers, body in refused:
        assert int(headers["Retry-After"]) >= 1
        assert body["error"]["code"] == "concurrency_limit_exceeded"
        assert body["error"]["limit"] in ("ARBITER_SYNC_CALLS_PER_KEY", "ARBITER_SYNC_CALLS_PER_PROCESS")
    assert any(body["error"]["limit"] == "ARBITER_SYNC_CALLS_PER_KEY" for _, _, body in refused)


@pytest.mark.slow
def test_a_web_process_keeps_a_thread_free_whoever_calls(arbiter, web, slow_model, live_db):
    # Two applications, each within its own bound, together ask for every thread of the process.
    keys = [key_for(ApplicationFactory(), "jobs:write") for _ in range(2)] * PER_KEY

    def others():
        return [call(f"{web.url}/healthz", None, timeout=SLOW_MS / 1000 - 3)[0]]

    answers, other_statuses = flood(web.url, keys, while_flooding=others)
    assert other_statuses == [200]
    assert all(0 < status < 500 for status, _, _ in answers), answers
    refused = refusals(answers)
    assert len(refused) == len(keys) - (THREADS - 1)
    assert {body["error"]["limit"] for _, _, body in refused} == {"ARBITER_SYNC_CALLS_PER_PROCESS"}
