"""Live keys are remembered in each web process (routing.services.key_cache), yet a key revoked, or whose
application is disabled or whose owner is deactivated, stops working at the very next request, in another
process too: here the Procfile's gunicorn, which has just served the key, and the change made in this one.
No sleeping: the change publishes a new token in Redis before it returns, and every lookup reads it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import update_last_login
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.ledger import Actor
from routing.models import ApiKey
from routing.services import key_cache
from routing.services.keys import api_key_authenticate, api_key_revoke
from tests.security.webserver import procfile_web
from tests.support.factories import ApplicationFactory, UserFactory
from tests.support.live import live_arbiter
from tests.support.personas import key_for
from tests.support.workers import database_url_for_workers


@pytest.fixture(scope="module")
def arbiter(django_db_setup, django_db_blocker, model_server):
    with django_db_blocker.unblock():
        yield from live_arbiter(model_server.base_url)


@pytest.fixture(scope="module")
def web(arbiter, model_server):
    env = {
        "DATABASE_URL": database_url_for_workers(),
        "REDIS_URL": settings.REDIS_URL,
        "ARBITER_QUEUE": arbiter.queue,
        "ARBITER_MODELSERVER_URL": model_server.base_url,
        "ARBITER_RATE_LIMIT_PER_MINUTE": "0",
        "WEB_CONCURRENCY": "1",
    }
    with procfile_web(env) as server:
        yield server


@pytest.fixture
def committed(django_db_blocker):
    """Rows written here are committed at once (gunicorn reads them from its own connection)."""
    with django_db_blocker.unblock():
        yield


def jobs_list_status(url: str, raw_key: str) -> int:
    request = urllib.request.Request(f"{url}/api/v1/jobs", headers={"Authorization": f"Bearer {raw_key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def key_row(raw: str) -> ApiKey:
    return ApiKey.objects.select_related("application", "created_by").get(prefix=raw.split("_")[1])


def served_twice(web, raw: str) -> None:
    """The key has been used, so the web process holds it."""
    assert [jobs_list_status(web.url, raw) for _ in range(2)] == [200, 200]


@pytest.mark.django_db
def test_an_authenticated_key_is_read_from_the_database_once(owner):
    # Also the django_db test that makes pytest-django create the test database for this module.
    raw = owner.key
    assert api_key_authenticate(raw) is not None
    with CaptureQueriesContext(connection) as captured:
        key = api_key_authenticate(raw)
    assert key is not None and key.application.pk == owner.application.pk
    assert captured.captured_queries == []
    # A wrong secret for the cached prefix is still refused.
    assert api_key_authenticate(raw[:-4] + "AAAA") is None


@pytest.mark.django_db
def test_a_sign_in_keeps_the_cache_and_any_other_save_of_a_person_empties_it(owner):
    person = UserFactory()
    assert api_key_authenticate(owner.key) is not None
    update_last_login(None, person)  # what every sign-in saves: last_login alone
    with CaptureQueriesContext(connection) as captured:
        assert api_key_authenticate(owner.key) is not None
    assert captured.captured_queries == []
    person.first_name = "Renamed"
    person.save()
    with CaptureQueriesContext(connection) as captured:
        assert api_key_authenticate(owner.key) is not None
    assert captured.captured_queries  # read again from the database


@pytest.mark.django_db
def test_each_request_gets_its_own_copies(owner):
    first = api_key_authenticate(owner.key)
    first.application.name = "changed by one request"
    first.created_by._arbiter_role_names = {"cached for one request"}
    second = api_key_authenticate(owner.key)
    assert second.application.name == owner.application.name
    assert not hasattr(second.created_by, "_arbiter_role_names")


@pytest.mark.django_db
def test_without_redis_keys_are_read_from_the_database(owner, monkeypatch):
    def unreadable():
        return redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)

    assert api_key_authenticate(owner.key) is not None
    monkeypatch.setattr(key_cache, "get_redis", unreadable)
    with CaptureQueriesContext(connection) as captured:
        assert api_key_authenticate(owner.key) is not None
    assert captured.captured_queries
    ApiKey.objects.filter(prefix=owner.key.split("_")[1]).update(revoked_at="2026-01-01T00:00:00Z")
    assert api_key_authenticate(owner.key) is None


def test_a_revoked_key_stops_in_the_web_process_at_the_next_request(arbiter, web, committed):
    raw = key_for(arbiter.setup.application, "jobs:read")
    served_twice(web, raw)
    assert api_key_revoke(key=key_row(raw), actor=Actor.system("test"), reason="leaked")
    assert jobs_list_status(web.url, raw) == 401


def test_a_disabled_application_stops_its_keys_at_the_next_request(web, committed):
    application = ApplicationFactory()
    raw = key_for(application, "jobs:read")
    served_twice(web, raw)
    application.is_active = False
    application.save()
    assert jobs_list_status(web.url, raw) == 401


def test_a_deactivated_owner_stops_their_keys_at_the_next_request(arbiter, web, committed):
    person = UserFactory()
    raw = key_for(arbiter.setup.application, "jobs:read", owner=person)
    served_twice(web, raw)
    person.is_active = False
    person.save()
    assert jobs_list_status(web.url, raw) == 401


def test_a_deleted_key_stops_at_the_next_request(arbiter, web, committed):
    raw = key_for(arbiter.setup.application, "jobs:read")
    served_twice(web, raw)
    key_row(raw).delete()
    assert jobs_list_status(web.url, raw) == 401
