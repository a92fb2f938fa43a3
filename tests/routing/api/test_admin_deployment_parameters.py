"""The catalog records which Chat Completions parameters each deployment takes (admin API)."""

from __future__ import annotations

import pytest

from audit.models import LedgerEvent
from routing.decide.parameters import DEFAULT_SUPPORTED
from routing.models import ModelDeployment

pytestmark = pytest.mark.django_db

BODY = {
    "tier": "flagship",
    "base_url": "http://127.0.0.1:8100/v1",
    "model": "sim-flagship",
    "price_in_per_mtok": "2",
    "price_out_per_mtok": "8",
}


def test_a_new_deployment_takes_every_parameter_unless_told_otherwise(admin):
    created = admin.client.post("/api/v1/admin/deployments", {**BODY, "name": "flag-all"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["parameters"] == list(DEFAULT_SUPPORTED)


def test_an_admin_narrows_a_deployments_parameters_and_the_ledger_says_so(admin):
    admin.client.post("/api/v1/admin/deployments", {**BODY, "name": "flag-reasoning"}, format="json")
    changed = admin.client.patch(
        "/api/v1/admin/deployments/flag-reasoning",
        {"parameters": ["seed", "tool_choice", "reasoning_effort", "seed"]},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["parameters"] == ["tool_choice", "seed", "reasoning_effort"]
    assert ModelDeployment.objects.get(name="flag-reasoning").parameters == ["tool_choice", "seed", "reasoning_effort"]
    updated = LedgerEvent.objects.filter(event_type="deployment.updated").latest("id")
    assert "parameters" in str(updated.body)


def test_a_parameter_arbiter_does_not_know_is_refused(admin):
    response = admin.client.post(
        "/api/v1/admin/deployments", {**BODY, "name": "flag-typo", "parameters": ["temprature"]}, format="json"
    )
    assert response.status_code == 400
    assert "temprature" in str(response.json())
    assert not ModelDeployment.objects.filter(name="flag-typo").exists()
