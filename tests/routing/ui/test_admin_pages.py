"""The catalog with its circuit breakers; applications with keys (shown once) and budgets."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from routing.execute.breaker import CircuitBreaker
from routing.models import ApiKey
from routing.services.keys import api_key_authenticate
from tests.support.factories import ApplicationFactory, DeploymentFactory


@pytest.fixture
def application(people):
    return ApplicationFactory(monthly_soft_limit_usd=Decimal("50"), monthly_hard_limit_usd=Decimal("100"))


def test_the_catalog_shows_prices_and_each_breakers_state(as_user, redis_client):
    healthy = DeploymentFactory(tier="mini")
    failing = DeploymentFactory(tier="nano")
    breaker = CircuitBreaker(failing.name, threshold=2)
    breaker.record_failure()
    breaker.record_failure()
    try:
        page = as_user("auditor").get(reverse("catalog")).content.decode()
    finally:
        breaker.record_success()
    row = page.split(f"<code>{failing.name}</code>")[1].split("</tr>")[0]
    assert "badge-open" in row and "2 recent failures" in row
    assert "badge-closed" in page.split(f"<code>{healthy.name}</code>")[1].split("</tr>")[0]
    assert "0.20" in row and "1.25" in row
    assert "Disable" not in page  # the auditor reads only


def test_an_admin_disables_and_enables_a_deployment(as_user):
    deployment = DeploymentFactory()
    client = as_user("admin")
    client.post(reverse("deployment-toggle", kwargs={"name": deployment.name}), {"enabled": "false"})
    deployment.refresh_from_db()
    assert deployment.enabled is False
    client.post(reverse("deployment-toggle", kwargs={"name": deployment.name}), {"enabled": "true"})
    deployment.refresh_from_db()
    assert deployment.enabled is True


def test_applications_show_their_spend_and_limits(as_user, application):
    page = as_user("auditor").get(reverse("applications")).content.decode()
    assert application.name in page and "$50.00" in page and "$100.00" in page


def test_a_new_key_is_shown_once_works_and_is_never_cached(as_user, people, application):
    client = as_user("admin")
    response = client.post(reverse("application-key-new", kwargs={"slug": application.slug}),
                           {"name": "ci", "scopes": ["jobs:write"]})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    plaintext = response.content.decode().split('<pre class="output mono" id="new-key">')[1].split("</pre>")[0]
    key = api_key_authenticate(plaintext)
    assert key is not None and key.scopes == ["jobs:write"] and key.application == application
    assert key.created_by == people["admin"]  # the key acts for the person who minted it
    again = client.get(reverse("application", kwargs={"slug": application.slug})).content.decode()
    assert plaintext not in again and key.prefix in again


def test_a_key_without_scopes_or_with_a_past_expiry_is_a_clear_400(as_user, application):
    client = as_user("admin")
    url = reverse("application-key-new", kwargs={"slug": application.slug})
    assert b"at least one scope" in client.post(url, {"name": "x"}).content
    response = client.post(url, {"scopes": ["jobs:read"], "expires_on": "2000-01-01"})
    assert response.status_code == 400 and b"An expiry must be in the future" in response.content
    assert not ApiKey.objects.filter(application=application).exists()


def test_revoking_a_key_stops_it(as_user, application):
    client = as_user("admin")
    response = client.post(reverse("application-key-new", kwargs={"slug": application.slug}),
                           {"scopes": ["jobs:read"]})
    plaintext = response.content.decode().split('id="new-key">')[1].split("</pre>")[0]
    key = ApiKey.objects.get(application=application)
    client.post(reverse("application-key-revoke", kwargs={"slug": application.slug, "prefix": key.prefix}))
    assert api_key_authenticate(plaintext) is None


def test_an_admin_sets_the_budget(as_user, application):
    response = as_user("admin").post(reverse("application-budget", kwargs={"slug": application.slug}),
                                     {"monthly_soft_limit_usd": "20", "monthly_hard_limit_usd": ""})
    assert response.status_code == 302
    application.refresh_from_db()
    assert (application.monthly_soft_limit_usd, application.monthly_hard_limit_usd) == (Decimal("20"), None)


@pytest.mark.parametrize("values", [
    {"monthly_soft_limit_usd": "200", "monthly_hard_limit_usd": "100"},
    {"monthly_soft_limit_usd": "-1"},
    {"monthly_hard_limit_usd": "lots"},
])
def test_a_bad_budget_is_a_clear_400(as_user, application, values):
    response = as_user("admin").post(reverse("application-budget", kwargs={"slug": application.slug}), values)
    assert response.status_code == 400
    application.refresh_from_db()
    assert application.monthly_hard_limit_usd == Decimal("100")
