"""Every UI view checks its role on the server, and refuses the wrong method.

The matrix below is written out by hand (not read from the views), so that a view whose decorator
drifts from what it should allow fails here. For each view: anonymous visitors go to the sign-in page,
every persona without the role gets 403, every persona with it gets past the check (a 404 for the
made-up ids used here still means "allowed"), and the wrong method gets 405.
"""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from audit import urls as audit_urls
from evaluation import urls as evaluation_urls
from review import urls as review_urls
from routing import urls as routing_urls

JOB = {"job_id": uuid.uuid4()}
POLICY = {"name": "no-such-policy"}
VERSION = {"name": "no-such-policy", "number": 1}
APPLICATION = {"slug": "no-such-application"}

READ_JOBS = {"reviewer", "auditor"}
REVIEW = {"reviewer"}
# A policy admin also reaches the decision actions, but only on a job one of whose rules names their
# group (tests/review/test_decisions_by_group.py); on any other (this one does not exist) they are refused.
DECIDE = REVIEW
READ_POLICIES = {"admin", "auditor", "reviewer"}
READ_ADMIN = {"admin", "auditor"}
ADMIN = {"admin"}
READ_LEDGER = {"auditor", "reviewer"}
EXPORT = {"auditor"}
ERASE = {"auditor", "admin"}
EVERYONE = {"reviewer", "admin", "auditor"}

# name: (url kwargs, methods allowed, personas allowed; the superuser is always allowed)
VIEWS = {
    "dashboard": ({}, {"GET"}, EVERYONE),
    "queue": ({}, {"GET"}, READ_JOBS),
    "queue-count": ({}, {"GET"}, READ_JOBS),
    "queue-bulk": ({}, {"POST"}, REVIEW),
    "jobs": ({}, {"GET"}, READ_JOBS),
    "job": (JOB, {"GET"}, READ_JOBS),
    "job-verify": (JOB, {"POST"}, READ_JOBS),
    "job-compare": (JOB, {"GET"}, READ_JOBS),
    "runs": ({}, {"GET"}, READ_JOBS),
    "run": ({"run_id": uuid.uuid4()}, {"GET"}, READ_JOBS),
    "job-approve": (JOB, {"POST"}, DECIDE),
    "job-reject": (JOB, {"POST"}, DECIDE),
    "job-escalate": (JOB, {"POST"}, DECIDE),
    "job-override-preview": (JOB, {"POST"}, DECIDE),
    "job-override": (JOB, {"POST"}, DECIDE),
    "job-replay": (JOB, {"POST"}, REVIEW),
    "review-tokens": ({}, {"GET"}, EVERYONE),
    "review-token-new": ({}, {"POST"}, EVERYONE),
    "review-token-revoke": ({"prefix": "abc"}, {"POST"}, EVERYONE),
    "policies": ({}, {"GET"}, READ_POLICIES),
    "policy": (POLICY, {"GET"}, READ_POLICIES),
    "policy-diff": (POLICY, {"GET"}, READ_POLICIES),
    "policy-version": (VERSION, {"GET"}, READ_POLICIES),
    "policy-version-new": (POLICY, {"GET", "POST"}, ADMIN),
    "policy-check": (POLICY, {"POST"}, ADMIN),
    "policy-thresholds": (VERSION, {"GET", "POST"}, ADMIN),
    "policy-version-submit": (VERSION, {"POST"}, ADMIN),
    "policy-version-activate": (VERSION, {"POST"}, ADMIN),
    "policy-history-replay": (VERSION, {"POST"}, ADMIN),
    "evaluations": ({}, {"GET"}, READ_POLICIES),
    "evaluation": ({"evaluation_id": 987654321}, {"GET"}, READ_POLICIES),
    "history-replay": ({"run_id": 987654321}, {"GET"}, READ_POLICIES),
    "catalog": ({}, {"GET"}, READ_ADMIN),
    "deployment-toggle": ({"name": "no-such-deployment"}, {"POST"}, ADMIN),
    "applications": ({}, {"GET"}, READ_ADMIN),
    "application": (APPLICATION, {"GET"}, READ_ADMIN),
    "application-key-new": (APPLICATION, {"POST"}, ADMIN),
    "application-key-revoke": ({**APPLICATION, "prefix": "abc"}, {"POST"}, ADMIN),
    "application-budget": (APPLICATION, {"POST"}, ADMIN),
    "application-review-notify": (APPLICATION, {"POST"}, ADMIN),
    "ledger": ({}, {"GET"}, READ_LEDGER),
    "ledger-event": ({"event_id": 987654321}, {"GET"}, READ_LEDGER),
    "ledger-export-new": ({}, {"GET", "POST"}, EXPORT),
    "ledger-export": ({"export_id": "0" * 32}, {"GET"}, EXPORT),
    "ledger-export-download": ({"export_id": "0" * 32}, {"GET"}, EXPORT),
    "erasure": ({}, {"GET"}, ERASE),
    "erasure-preview": ({}, {"POST"}, ERASE),
    "erasure-confirm": ({}, {"POST"}, ERASE),
}
PERSONAS = ("reviewer", "admin", "auditor", "outsider", "superuser")


def _call(client, method: str, url: str):
    return getattr(client, method.lower())(url)


def test_it_covers_every_ui_url():
    # Every page of every app (the API, the OpenAI endpoint and metrics are included apart, unnamed here).
    patterns = [*routing_urls.urlpatterns, *review_urls.urlpatterns, *evaluation_urls.urlpatterns,
                *audit_urls.urlpatterns]
    named = {getattr(pattern, "name", None) for pattern in patterns} - {"metrics", None}
    assert named == set(VIEWS)


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_it_sends_anonymous_visitors_to_sign_in(client, db, name):
    kwargs, methods, _ = VIEWS[name]
    url = reverse(name, kwargs=kwargs)
    for method in methods:
        response = _call(client, method, url)
        assert response.status_code == 302, (name, method)
        assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_it_asks_an_htmx_request_to_reload_the_whole_page_at_sign_in(client, db, name):
    kwargs, methods, _ = VIEWS[name]
    method = sorted(methods)[0]
    response = getattr(client, method.lower())(
        reverse(name, kwargs=kwargs), HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/review/?tier=nano"
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login/?next=%2Freview%2F%3Ftier%3Dnano"


@pytest.mark.parametrize("name", sorted(VIEWS))
@pytest.mark.parametrize("persona", PERSONAS)
def test_it_lets_in_exactly_the_roles_that_may_use_it(as_user, name, persona):
    kwargs, methods, allowed = VIEWS[name]
    client = as_user(persona)
    url = reverse(name, kwargs=kwargs)
    for method in methods:
        response = _call(client, method, url)
        if persona in allowed or persona == "superuser":
            assert response.status_code not in (302, 403, 405), (name, persona, method, response.status_code)
        else:
            assert response.status_code == 403, (name, persona, method, response.status_code)


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_it_refuses_the_wrong_method(as_user, name):
    kwargs, methods, _ = VIEWS[name]
    client = as_user("superuser")
    url = reverse(name, kwargs=kwargs)
    wrong = {"GET", "POST", "PUT", "DELETE"} - methods - ({"PUT", "DELETE"} if len(methods) == 1 else set())
    for method in wrong:
        assert _call(client, method, url).status_code == 405, (name, method)


def test_a_403_page_says_which_role_is_needed(as_user):
    response = as_user("auditor").post(reverse("job-approve", kwargs=JOB))
    assert response.status_code == 403
    assert b"this needs the role reviewer" in response.content
