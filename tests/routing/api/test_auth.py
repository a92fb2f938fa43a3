"""Keys: only as a bearer token, only live ones, only with the scope the operation needs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from audit.ledger import Actor
from routing.models import ApiKey
from routing.services.keys import api_key_revoke
from tests.support.personas import client_with, key_for

pytestmark = pytest.mark.django_db


def assert_unauthorized(owner, response, says: str) -> None:
    assert response.status_code == 401, response.json()
    assert response["WWW-Authenticate"] == 'Bearer realm="arbiter"'
    assert says in response.json()["detail"]
    assert owner.job_count() == 0


def test_it_submits_with_a_bearer_key(owner):
    assert owner.submit().status_code == 201
    assert owner.job_count() == 1


def test_a_missing_key_is_401(owner):
    response = client_with(None).post("/api/v1/jobs", {}, format="json")
    assert_unauthorized(owner, response, "Authentication credentials were not provided")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token arb_x_y", "Bearer \xe9\xe9"])
def test_a_malformed_authorization_header_is_401(owner, header):
    client = client_with(None)
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post("/api/v1/jobs", {}, format="json")
    assert response.status_code == 401
    assert owner.job_count() == 0


@pytest.mark.parametrize("token", ["arb_nope_nope", "sk-not-ours", "arb_", "arb_" + "x" * 500])
def test_an_unknown_key_is_401(owner, token):
    assert_unauthorized(owner, client_with(token).post("/api/v1/jobs", {}, format="json"), "invalid API key")


def test_a_wrong_secret_for_a_real_prefix_is_401(owner):
    prefix = owner.key.split("_")[1]
    response = client_with(f"arb_{prefix}_{'A' * 43}").post("/api/v1/jobs", {}, format="json")
    assert_unauthorized(owner, response, "invalid API key")


def test_a_revoked_key_is_401(owner):
    api_key_revoke(key=ApiKey.objects.get(prefix=owner.key.split("_")[1]), actor=Actor.system("test"))
    assert_unauthorized(owner, owner.submit(), "revoked")


def test_an_expired_key_is_401(owner):
    raw = key_for(owner.application, "jobs:write", expires_at=timezone.now() + timedelta(seconds=1))
    ApiKey.objects.filter(prefix=raw.split("_")[1]).update(expires_at=timezone.now() - timedelta(seconds=1))
    owner.client = client_with(raw)
    assert_unauthorized(owner, owner.submit(), "expired")


def test_a_key_of_a_disabled_application_is_401(owner):
    owner.application.is_active = False
    owner.application.save()
    assert_unauthorized(owner, owner.submit(), "disabled")


@pytest.mark.parametrize("name", ["api_key", "key", "token"])
def test_a_key_in_the_query_string_is_refused_even_with_a_good_header(owner, name):
    # The key itself is then revoked: tests/security/test_keys_in_urls_are_revoked.py.
    response = owner.client.post(f"/api/v1/jobs?{name}={owner.key}", {}, format="json")
    assert response.status_code == 400
    assert "not accepted in the URL" in response.json()["detail"]
    assert owner.job_count() == 0


def test_a_read_only_key_cannot_submit(owner):
    owner.client = client_with(key_for(owner.application, "jobs:read"))
    response = owner.submit()
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert "jobs:write" in response.json()["detail"]
    assert owner.job_count() == 0


def test_a_write_only_key_cannot_read(owner):
    job_id = owner.submit().json()["id"]
    client = client_with(key_for(owner.application, "jobs:write"))
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 403
    assert client.get("/api/v1/jobs").status_code == 403


def test_a_jobs_key_cannot_use_the_admin_api(owner):
    response = owner.client.get("/api/v1/admin/policies")
    assert response.status_code == 403
    assert "platform:admin" in response.json()["detail"]


def test_an_admin_key_cannot_submit_jobs(admin):
    response = admin.client.post("/api/v1/jobs", {}, format="json")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("put", "/api/v1/jobs"),
        ("delete", "/api/v1/jobs"),
        ("get", "/api/v1/jobs/00000000-0000-0000-0000-000000000000/cancel"),
    ],
)
def test_a_wrong_method_is_405(owner, method, url):
    response = getattr(owner.client, method)(url)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/problem+json"


def test_the_rate_limit_answers_429_with_retry_after(owner):
    with override_settings(ARBITER_RATE_LIMIT_PER_MINUTE=3):
        statuses = [owner.client.get("/api/v1/jobs").status_code for _ in range(4)]
        response = owner.client.get("/api/v1/jobs")
        other_key = client_with(key_for(owner.application, "jobs:read")).get("/api/v1/jobs")
    assert statuses == [200, 200, 200, 429]
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 61
    assert response.json()["code"] == "rate_limited"
    assert other_key.status_code == 200  # per key, not per application
