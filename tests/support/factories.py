"""factory_boy factories for Arbiter's domain. Names are unique per test run: integration tests commit."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from routing.models import (
    Application,
    ApprovalDecision,
    ApprovalRequest,
    Job,
    JobStatus,
    ModelDeployment,
    Step,
    StepOutcome,
)
from routing.models.approvals import ApprovalStatus, DecisionKind


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.LazyFunction(lambda: unique("user"))
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for role in extracted or []:
            self.groups.add(Group.objects.get_or_create(name=str(role))[0])


class ApplicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Application

    name = factory.LazyFunction(lambda: unique("app"))
    slug = factory.LazyAttribute(lambda o: o.name)


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelDeployment

    name = factory.LazyAttribute(lambda o: unique(f"{o.tier}"))
    tier = "nano"
    model = factory.LazyAttribute(lambda o: f"sim-{o.tier}")
    base_url = "http://127.0.0.1:8100/v1"
    price_in_per_mtok = Decimal("0.20")
    price_out_per_mtok = Decimal("1.25")
    region = "us"
    timeout_s = 5.0


class JobFactory(factory.django.DjangoModelFactory):
    """A past job as the pipeline leaves it; give `policy_version`, and its steps with StepFactory."""

    class Meta:
        model = Job

    application = factory.SubFactory(ApplicationFactory)
    task_type = "classification"
    request = factory.LazyAttribute(
        lambda o: {"messages": [{"role": "user", "content": f"[task:{o.task_type}] a request"}]}
    )
    status = JobStatus.COMPLETED
    input_tokens = 5
    complexity = 0.1


class StepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Step

    job = factory.SubFactory(JobFactory)
    attempt = 1
    index = 0
    tier = "nano"
    confidence = 0.9
    confidence_method = "logprob"
    outcome = StepOutcome.ACCEPTED
    output = factory.LazyFunction(lambda: {"content": "answer: A", "tool_calls": []})
    cost_usd = Decimal("0.001")


class ApprovalRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApprovalRequest

    job = factory.SubFactory(JobFactory)
    rule_ids = factory.LazyFunction(lambda: ["unsure"])
    status = ApprovalStatus.PENDING
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=4))


class ApprovalDecisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApprovalDecision

    request = factory.SubFactory(ApprovalRequestFactory)
    actor = factory.SubFactory(UserFactory)
    kind = DecisionKind.APPROVE
    reason = "checked"
