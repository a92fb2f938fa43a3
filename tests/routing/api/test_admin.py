"""The admin API: policies and versions, catalog, applications, keys, budgets (platform:admin)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from audit.models import LedgerEvent
from routing.models import ApiKey, Application, ModelDeployment, PolicyVersion
from tests.support.factories import ApplicationFactory
from tests.support.governed import POLICY
from tests.support.personas import client_with, key_for

pytestmark = pytest.mark.django_db


def test_it_lists_policies_and_versions(admin):
    name = admin.setup.policy.name
    policies = admin.client.get("/api/v1/admin/policies").json()
    mine = next(policy for policy in policies if policy["name"] == name)
    assert mine["active_version"] == 1
    versions = admin.client.get(f"/api/v1/admin/policies/{name}/versions").json()
    assert [(v["number"], v["status"]) for v in versions] == [(1, "active")]
    assert admin.client.get(f"/api/v1/admin/policies/{name}/versions/1").json()["sha256"] == versions[0]["sha256"]


def test_it_creates_and_submits_a_version_authored_by_the_keys_owner(admin):
    name = admin.setup.policy.name
    response = admin.client.post(
        f"/api/v1/admin/policies/{name}/versions",
        {"source": POLICY.replace("0.80", "0.85"), "comment": "stricter nano", "parent": 1},
        format="json",
    )
    assert response.status_code == 201, response.json()
    version = response.json()
    assert (version["number"], version["status"], version["parent"]) == (2, "draft", 1)
    owner = ApiKey.objects.get(application=admin.application).created_by
    assert version["author"] == owner.username
    submitted = admin.client.post(f"/api/v1/admin/policies/{name}/versions/2/submit", format="json")
    assert (submitted.json()["status"], submitted.json()["submitted_by"]) == ("pending", owner.username)
    again = admin.client.post(f"/api/v1/admin/policies/{name}/versions/2/submit", format="json")
    assert again.status_code == 409


def test_an_invalid_version_is_400_pointing_at_the_line_and_path(admin):
    name = admin.setup.policy.name
    source = "rules:\n  - id: broken\n    cascade: [nano, enormous]\n"
    response = admin.client.post(f"/api/v1/admin/policies/{name}/versions", {"source": source}, format="json")
    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "invalid_policy"
    error = next(e for e in problem["errors"] if "cascade" in (e["path"] or ""))
    assert error["field"] == "source" and error["line"] == 3
    assert PolicyVersion.objects.filter(policy=admin.setup.policy).count() == 1


def test_a_draft_cannot_be_activated_over_the_api_before_it_is_submitted(admin):
    name = admin.setup.policy.name
    admin.client.post(f"/api/v1/admin/policies/{name}/versions", {"source": POLICY}, format="json")
    other_admin = client_with(key_for(ApplicationFactory(), "platform:admin"))
    response = other_admin.post(f"/api/v1/admin/policies/{name}/versions/2/activate", format="json")
    assert response.status_code == 409
    assert "never submitted" in response.json()["detail"]
    assert PolicyVersion.objects.get(policy=admin.setup.policy, number=2).status == "draft"


def test_unknown_policies_and_versions_are_404(admin):
    assert admin.client.get("/api/v1/admin/policies/nope/versions").status_code == 404
    name = admin.setup.policy.name
    for number in ("99", "99999999999999999999"):
        assert admin.client.get(f"/api/v1/admin/policies/{name}/versions/{number}").status_code == 404


def test_deployments_are_created_updated_and_disabled_not_deleted(admin):
    created = admin.client.post(
        "/api/v1/admin/deployments",
        {
            "name": "mini-eu-2",
            "tier": "mini",
            "base_url": "http://127.0.0.1:8100/v1",
            "model": "sim-mini",
            "price_in_per_mtok": "0.40",
            "price_out_per_mtok": "1.60",
            "region": "eu",
            "api_key_env": "ARBITER_PROVIDER_KEY_EU",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    changed = admin.client.patch("/api/v1/admin/deployments/mini-eu-2", {"priority": 5}, format="json").json()
    assert changed["priority"] == 5
    disabled = admin.client.post("/api/v1/admin/deployments/mini-eu-2/disable", format="json").json()
    assert disabled["enabled"] is False
    assert admin.client.delete("/api/v1/admin/deployments/mini-eu-2").status_code == 405
    assert ModelDeployment.objects.filter(name="mini-eu-2", enabled=False).exists()
    events = list(LedgerEvent.objects.filter(event_type__startswith="deployment.").values_list("event_type", flat=True))
    assert events[-3:] == ["deployment.created", "deployment.updated", "deployment.disabled"]


def test_a_deployment_cannot_hold_a_secret_or_a_duplicate_name(admin):
    existing = admin.setup.deployments["nano"].name
    body = {
        "name": "x1",
        "tier": "nano",
        "base_url": "http://127.0.0.1:8100/v1",
        "model": "m",
        "price_in_per_mtok": "0",
        "price_out_per_mtok": "0",
        "api_key_env": "sk-live-abc",
    }
    assert (
        admin.client.post("/api/v1/admin/deployments", body, format="json").json()["errors"][0]["field"]
        == "api_key_env"
    )
    response = admin.client.post(
        "/api/v1/admin/deployments", {**body, "name": existing, "api_key_env": ""}, format="json"
    )
    assert response.status_code == 409


def test_applications_keys_and_budgets(admin):
    created = admin.client.post(
        "/api/v1/admin/applications", {"name": "Billing bot", "slug": "billing-bot"}, format="json"
    )
    assert created.status_code == 201
    assert any(a["slug"] == "billing-bot" for a in admin.client.get("/api/v1/admin/applications").json())
    key = admin.client.post(
        "/api/v1/admin/applications/billing-bot/keys",
        {"name": "prod", "scopes": ["jobs:read", "jobs:write"]},
        format="json",
    )
    assert key.status_code == 201 and key["Cache-Control"] == "no-store"
    plaintext = key.json()["key"]
    assert client_with(plaintext).get("/api/v1/jobs").status_code == 200
    listed = admin.client.get("/api/v1/admin/applications/billing-bot/keys").json()
    assert "key" not in listed[0] and listed[0]["prefix"] == key.json()["prefix"]
    revoked = admin.client.post(
        f"/api/v1/admin/applications/billing-bot/keys/{listed[0]['prefix']}/revoke", format="json"
    )
    assert revoked.json()["revoked_at"] is not None
    assert client_with(plaintext).get("/api/v1/jobs").status_code == 401
    budget = admin.client.put(
        "/api/v1/admin/applications/billing-bot/budget",
        {"monthly_soft_limit_usd": "50.00", "monthly_hard_limit_usd": "80.00"},
        format="json",
    )
    assert budget.status_code == 200
    application = Application.objects.get(slug="billing-bot")
    assert (application.monthly_soft_limit_usd, application.monthly_hard_limit_usd) == (Decimal(50), Decimal(80))


def test_a_soft_limit_above_the_hard_limit_is_400(admin):
    slug = admin.application.slug
    response = admin.client.put(
        f"/api/v1/admin/applications/{slug}/budget",
        {"monthly_soft_limit_usd": "90", "monthly_hard_limit_usd": "80"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "monthly_soft_limit_usd"


def test_a_key_with_an_unknown_scope_is_400_listing_the_scopes(admin):
    response = admin.client.post(
        f"/api/v1/admin/applications/{admin.application.slug}/keys", {"scopes": ["everything"]}, format="json"
    )
    assert response.status_code == 400
    assert "jobs:read" in response.json()["detail"]
    assert ApiKey.objects.filter(application=admin.application).count() == 1
