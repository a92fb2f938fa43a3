"""The UI's security rules: sign-in with safe redirects, CSRF through htmx, no state change on GET,
a Content Security Policy that needs no inline script, clickjacking protection."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.support.builders import active_policy, held_job
from tests.support.factories import ApplicationFactory, UserFactory

PASSWORD = "correct horse battery staple"


class _Inline(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, event-handler attributes, style
    attributes and <style> elements, javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"{name}= on <{tag}>")
            if name == "style":
                self.problems.append(f"style= on <{tag}>")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"javascript: URL on <{tag}>")


def test_every_page_works_under_a_csp_without_inline_script_or_style(as_user, people):
    version = active_policy(author=people["admin"])
    job = held_job(version=version, content='<b onclick="x()">hi</b>')
    application = ApplicationFactory()
    pages = [
        reverse("dashboard"), reverse("queue"), reverse("jobs"), reverse("job", kwargs={"job_id": job.pk}),
        reverse("policies"), reverse("policy", kwargs={"name": version.policy.name}),
        reverse("policy-version", kwargs={"name": version.policy.name, "number": 1}),
        reverse("policy-version-new", kwargs={"name": version.policy.name}),
        reverse("policy-thresholds", kwargs={"name": version.policy.name, "number": 1}),
        reverse("policy-diff", kwargs={"name": version.policy.name}),
        reverse("catalog"), reverse("applications"), reverse("application", kwargs={"slug": application.slug}),
        reverse("ledger"), reverse("ledger-export-new"),
    ]
    client = as_user("superuser")
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == settings.ARBITER_CSP, url
        assert "'unsafe-inline'" not in settings.ARBITER_CSP and "script-src 'self'" in settings.ARBITER_CSP
        parser = _Inline()
        parser.feed(response.content.decode())
        assert parser.problems == [], (url, parser.problems)
    assert Client().get(reverse("login"))["Content-Security-Policy"] == settings.ARBITER_CSP


def test_pages_cannot_be_framed(as_user):
    response = as_user("reviewer").get(reverse("dashboard"))
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_htmx_is_ours_configured_by_meta_and_carries_the_csrf_token(as_user):
    page = as_user("reviewer").get(reverse("dashboard")).content.decode()
    assert '<script src="/static/vendor/htmx.min.js" defer></script>' in page
    assert re.search(r'<meta name="htmx-config" content=\'\{[^\']*"allowEval": false', page)
    assert re.search(r'<body hx-headers=\'\{"X-CSRFToken": "[A-Za-z0-9]{32,}"\}\'>', page)
    static = Path(settings.BASE_DIR) / "static" / "vendor"
    assert (static / "htmx.min.js").read_text().startswith("var htmx=function()")
    assert "Zero-Clause BSD" in (static / "htmx.LICENSE").read_text()


def test_a_post_without_the_csrf_token_is_refused_and_the_htmx_header_is_accepted(people):
    job = held_job(version=active_policy())
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["reviewer"])
    url = reverse("job-approve", kwargs={"job_id": job.pk})
    assert client.post(url, {"expected_version": 1}).status_code == 403
    page = client.get(reverse("job", kwargs={"job_id": job.pk})).content.decode()
    token = re.search(r'"X-CSRFToken": "([A-Za-z0-9]+)"', page).group(1)
    assert client.post(url, {"expected_version": 1}, HTTP_X_CSRFTOKEN=token).status_code == 302


def test_sign_in_redirects_only_to_our_own_pages(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = UserFactory(roles=["reviewer"])
    for target, expected in (("/review/", "/review/"), ("https://evil.example/", "/"), ("//evil.example/x", "/")):
        client = Client()
        response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD, "next": target})
        assert response.status_code == 302 and response["Location"] == expected, target


def test_a_wrong_password_keeps_you_out(db):
    user = UserFactory()
    response = Client().post(reverse("login"), {"username": user.username, "password": "nope"})
    assert response.status_code == 200 and b"did not match" in response.content


def test_sign_out_is_a_post_and_ends_the_session(as_user):
    client = as_user("reviewer")
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout"))["Location"] == reverse("login")
    assert client.get(reverse("dashboard")).status_code == 302


def test_sessions_end_after_the_configured_time(as_user):
    client = as_user("reviewer")
    client.get(reverse("dashboard"))
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE


def test_the_api_docs_page_is_the_only_csp_exemption(client):
    assert settings.ARBITER_CSP_EXEMPT_PREFIXES == ("/api/docs/",)


@pytest.mark.parametrize("name", ["job-approve", "job-reject", "job-override", "job-replay", "queue-bulk"])
def test_no_decision_happens_on_get(as_user, name):
    import uuid

    kwargs = {} if name == "queue-bulk" else {"job_id": uuid.uuid4()}
    assert as_user("reviewer").get(reverse(name, kwargs=kwargs)).status_code == 405
