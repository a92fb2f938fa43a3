"""Issue 12, item 8: an application administers itself (`app:admin`) and never reaches another one;
administering the platform (`platform:admin`) needs a person with the policy-admin role behind the key."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.urls import reverse
from django.utils import timezone

from controlplane.roles import Role
from routing.models import ApiKey, Application
from routing.services.keys import KeyRefused, api_key_authenticate, api_key_create
from tests.support.factories import UserFactory
from tests.support.personas import client_with, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def app_admin(owner):
    """An application admin key of the `owner` tenant, acting for a policy admin."""
    return client_with(key_for(owner.application, "app:admin", "jobs:read", "jobs:write"))


def _keys_url(application: Application) -> str:
    return f"/api/v1/admin/applications/{application.slug}/keys"


def test_an_application_key_cannot_mint_list_or_revoke_keys_of_another_application(app_admin, outsider):
    before = ApiKey.objects.filter(application=outsider.application).count()
    minted = app_admin.post(_keys_url(outsider.application), {"scopes": ["jobs:read"]}, format="json")
    assert minted.status_code == 403
    assert minted.json()["code"] == "other_application"
    assert f"{outsider.application.slug!r} is not its application" in minted.json()["detail"]
    assert ApiKey.objects.filter(application=outsider.application).count() == before

    assert app_admin.get(_keys_url(outsider.application)).status_code == 403
    prefix = ApiKey.objects.filter(application=outsider.application).first().prefix
    revoked = app_admin.post(f"{_keys_url(outsider.application)}/{prefix}/revoke", format="json")
    assert revoked.status_code == 403
    assert outsider.client.get("/api/v1/jobs").status_code == 200  # the outsider's key still works


def test_an_application_key_cannot_read_another_applications_jobs(app_admin, outsider):
    job_id = outsider.submit().json()["id"]
    response = app_admin.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 404
    assert job_id not in [job["id"] for job in app_admin.get("/api/v1/jobs").json()["results"]]


def test_budgets_are_set_by_the_platform_and_read_by_the_application(app_admin, owner, outsider, people):
    for target in (outsider.application, owner.application):
        response = app_admin.put(
            f"/api/v1/admin/applications/{target.slug}/budget",
            {"monthly_soft_limit_usd": "0", "monthly_hard_limit_usd": "0"},
            format="json",
        )
        assert response.status_code == 403
    assert "lacks the `platform:admin` scope" in response.json()["detail"]
    outsider.application.refresh_from_db()
    assert outsider.application.monthly_hard_limit_usd is None

    own = app_admin.get(f"/api/v1/admin/applications/{owner.application.slug}/budget")
    assert own.status_code == 200
    assert own.json()["application"] == owner.application.slug and Decimal(own.json()["month_spend_usd"]) == 0
    assert app_admin.get(f"/api/v1/admin/applications/{outsider.application.slug}/budget").status_code == 403

    platform = client_with(key_for(owner.application, "platform:admin", owner=people["admin"]))
    set_by_platform = platform.put(
        f"/api/v1/admin/applications/{outsider.application.slug}/budget",
        {"monthly_soft_limit_usd": "10", "monthly_hard_limit_usd": "20"},
        format="json",
    )
    assert set_by_platform.status_code == 200
    assert set_by_platform.json()["monthly_hard_limit_usd"] == "20.00"


def test_an_application_key_mints_its_own_keys_no_wider_than_itself(owner, app_admin):
    narrower = app_admin.post(_keys_url(owner.application), {"scopes": ["jobs:read"]}, format="json")
    assert narrower.status_code == 201, narrower.json()
    parent_owner = ApiKey.objects.filter(application=owner.application, scopes__contains=["app:admin"]).get().created_by
    assert api_key_authenticate(narrower.json()["key"]).created_by == parent_owner

    wider = app_admin.post(_keys_url(owner.application), {"scopes": ["platform:admin"]}, format="json")
    assert wider.status_code == 403
    assert wider.json()["code"] == "key_refused"
    assert "cannot mint a key wider than itself" in wider.json()["detail"]
    assert app_admin.get("/api/v1/admin/applications").status_code == 403
    assert app_admin.get("/api/v1/admin/policies").status_code == 403


def test_a_short_lived_key_cannot_mint_a_key_that_outlives_it(owner):
    soon = timezone.now() + timedelta(hours=1)
    short_lived = client_with(key_for(owner.application, "app:admin", "jobs:read", expires_at=soon))
    forever = short_lived.post(_keys_url(owner.application), {"scopes": ["jobs:read"]}, format="json")
    assert forever.status_code == 403
    assert "cannot mint a key that outlives it" in forever.json()["detail"]
    within = short_lived.post(
        _keys_url(owner.application),
        {"scopes": ["jobs:read"], "expires_at": (soon - timedelta(minutes=5)).isoformat()},
        format="json",
    )
    assert within.status_code == 201, within.json()


def test_a_platform_key_needs_an_owner_with_the_policy_admin_role(governed_setup, as_user):
    reviewer = UserFactory(roles=[Role.REVIEWER])
    with pytest.raises(KeyRefused, match="does not hold the policy-admin role"):
        api_key_create(application=governed_setup.application, scopes=["platform:admin"], created_by=reviewer)
    with pytest.raises(KeyRefused, match="needs an active person"):
        api_key_create(application=governed_setup.application, scopes=["jobs:read"], created_by=None)
    response = as_user("reviewer").post(
        reverse("application-key-new", kwargs={"slug": governed_setup.application.slug}),
        {"scopes": ["platform:admin"]},
    )
    assert response.status_code == 403
    assert not ApiKey.objects.filter(application=governed_setup.application, scopes__contains=["platform:admin"])
    superuser_key, _ = api_key_create(
        application=governed_setup.application, scopes=["platform:admin"], created_by=UserFactory(is_superuser=True)
    )
    assert superuser_key.scopes == ["platform:admin"]


def test_a_platform_key_reaches_every_application(people, owner, outsider):
    platform = client_with(key_for(owner.application, "platform:admin", owner=people["admin"]))
    minted = platform.post(_keys_url(outsider.application), {"scopes": ["jobs:read"]}, format="json")
    assert minted.status_code == 201
    assert minted.json()["owner"] == people["admin"].username


def test_existing_policies_admin_keys_become_application_admin_keys(governed_setup, people):
    from importlib import import_module

    migration = import_module("routing.migrations.0008_gov_identity")
    legacy = ApiKey.objects.create(
        application=governed_setup.application,
        prefix="0123456789ab",
        secret_hash="0" * 64,
        scopes=["jobs:read", "policies:admin"],
        created_by=people["admin"],
    )
    migration.split_admin_scope(django_apps, None)
    legacy.refresh_from_db()
    assert legacy.scopes == ["app:admin", "jobs:read"]  # least privilege: its own application only
