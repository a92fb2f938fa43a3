"""factory_boy factories for Arbiter's domain. Names are unique per test run: integration tests commit."""

from __future__ import annotations

import uuid
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from routing.models import Application, ModelDeployment


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
