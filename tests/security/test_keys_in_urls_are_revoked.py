"""A key sent in a URL is leaked (access logs, proxies, browser history): it is refused, revoked on the
spot with a ledger event saying why, and the answer says so; and Arbiter's own access log never prints
query strings."""

from __future__ import annotations

import pytest

from audit.models import LedgerEvent
from routing.models import ApiKey
from tests.security.webserver import procfile_web
from tests.support.personas import client_with


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


@pytest.mark.slow
def test_the_access_log_never_prints_a_query_string():
    with procfile_web({"WEB_CONCURRENCY": "1"}, probe_path="/healthz?api_key=arb_0123456789ab_leakedsecret") as web:
        pass
    output = web.output[0]
    assert [line for line in output.splitlines() if "/healthz" in line], output  # the request was logged
    assert "leakedsecret" not in output
    assert "api_key" not in output
