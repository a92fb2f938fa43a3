"""Migration 0009 gives requests written before per-rule requirements one requirement per rule, from the
group and number of approvers they were decided on until now."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from routing.models import ApprovalRequest
from tests.support.builders import active_policy, held_job

migration = importlib.import_module("routing.migrations.0009_approval_requirements")


@pytest.mark.django_db
def test_existing_requests_keep_their_group_and_approvers_per_rule():
    job = held_job(version=active_policy(), rule="refunds-over-100", required=2)
    ApprovalRequest.objects.filter(job=job).update(
        rule_ids=["refunds-over-100", "eu-pii"], eligible_group="policy_admin", requirements=[]
    )
    migration.fill_requirements(apps, None)
    assert job.approval_requests.get().requirements == [
        {"rule": "refunds-over-100", "group": "policy_admin", "approvers": 2},
        {"rule": "eu-pii", "group": "policy_admin", "approvers": 2},
    ]
