"""A governed set-up per test: an application, a catalog on the local model server, an active policy
(POLICY, whose approval rules hold refunds over 100 made with REFUND_TOOL)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from audit.ledger import Actor
from routing.models import Application, ModelDeployment, Policy
from routing.services.jobs import job_submit
from routing.services.policies import (
    policy_create,
    policy_version_activate,
    policy_version_create,
    policy_version_submit,
)
from tests.support.factories import ApplicationFactory, DeploymentFactory, UserFactory

POLICY = """
rules:
  - id: cheap-first
    when: {task_type: [classification, extraction, ranking]}
    cascade: [nano, mini, flagship]
    escalate_below: {nano: 0.80, mini: 0.70}
    confidence: logprob
  - id: eu-data
    when: {labels.region: eu}
    deployments: {region: eu}
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
    confidence: logprob
  - id: default
    cascade: [mini, flagship]
    escalate_below: {mini: 0.75}
    confidence: logprob
approvals:
  - id: refunds-over-100
    when: {tool: issue_refund, args.amount: {gt: 100}}
    approvers: 2
    expires_after: 4h
    on_expiry: reject
  - id: unsure-after-flagship
    when: {final_confidence: {lt: 0.5}}
  - id: personal-data
    when: {labels.pii: true}
"""
REFUND_TOOL = [{"type": "function", "function": {"name": "issue_refund", "parameters": {"type": "object"}}}]


@dataclass
class Governed:
    application: Application
    policy: Policy
    deployments: dict[str, ModelDeployment] = field(default_factory=dict)

    def submit(self, content: str, *, task_type: str = "classification", **fields):
        job, _ = job_submit(
            application=self.application,
            task_type=task_type,
            messages=[{"role": "user", "content": content}],
            actor=Actor.application(self.application.pk),
            policy=self.policy.name,
            **fields,
        )
        return job


def governed(base_url: str, *, policy_source: str = POLICY, extra_deployments: list[dict] | None = None) -> Governed:
    """Each deployment gets its own model id (`sim-<tier>-<hex>`) so fault knobs never leak between tests."""
    suffix = uuid.uuid4().hex[:8]
    deployments = {}
    for tier in ("nano", "mini", "flagship"):
        deployments[tier] = DeploymentFactory(
            tier=tier, model=f"sim-{tier}-{suffix}", base_url=base_url, name=f"{tier}-{suffix}"
        )
    # The policy's EU rule needs EU deployments of its tiers (the catalog check refuses it otherwise);
    # they come after the primary ones, so other jobs only reach them as fallbacks.
    eu = [
        {"name": "mini-eu", "tier": "mini", "region": "eu", "priority": 150},
        {"name": "flagship-eu", "tier": "flagship", "region": "eu", "priority": 150},
    ]
    for extra in eu + (extra_deployments or []):
        name = f"{extra.pop('name')}-{suffix}"
        deployments[name.rsplit("-", 1)[0]] = DeploymentFactory(
            name=name, base_url=base_url, model=f"sim-{extra['tier']}-{name}", **extra
        )
    # Tests commit and share one database: only this test's deployments are enabled while it runs.
    ModelDeployment.objects.exclude(pk__in=[d.pk for d in deployments.values()]).update(enabled=False)
    author, approver = UserFactory(), UserFactory()
    policy = policy_create(name=f"policy-{suffix}", actor=Actor.system("test"))
    version = policy_version_create(policy=policy, source=policy_source, author=author, comment="test")
    policy_version_submit(version=version, user=author)
    policy_version_activate(version=version, user=approver)
    return Governed(application=ApplicationFactory(), policy=policy, deployments=deployments)
