"""Personas: for the API an owner application's keys, an outsider application, an admin key; for the UI
two reviewers, two policy admins, an auditor, someone with no role and a superuser, signed in.

Every test hashes passwords with MD5 (the personas are made with passwords; PBKDF2 at full strength would
dominate the run) and starts and ends with an empty cache (the dashboard caches its figures)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from audit.ledger import Actor
from controlplane.roles import Role
from routing.models import Application, Job
from routing.services.keys import api_key_create
from tests.support.factories import ApplicationFactory, UserFactory
from tests.support.governed import Governed, governed

UNUSED_MODEL_SERVER = "http://127.0.0.1:9/v1"  # these tests never run a job


def key_for(application: Application, *scopes: str, owner=None, **fields) -> str:
    """A key acting for `owner` (by default a fresh policy admin, who may hold any scope)."""
    _, raw = api_key_create(
        application=application,
        scopes=list(scopes),
        created_by=owner or UserFactory(roles=[Role.POLICY_ADMIN]),
        actor=Actor.system("test"),
        **fields,
    )
    return raw


def client_with(raw_key: str | None) -> APIClient:
    client = APIClient()
    if raw_key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@dataclass
class Tenant:
    setup: Governed
    key: str
    client: APIClient

    @property
    def application(self) -> Application:
        return self.setup.application

    def job_count(self) -> int:
        return Job.objects.filter(application=self.application).count()

    def submit(self, content: str = "Which queue? 'charged twice'", **fields):
        body = {
            "task_type": "classification",
            "messages": [{"role": "user", "content": content}],
            "policy": self.setup.policy.name,
            **fields,
        }
        return self.client.post("/api/v1/jobs", body, format="json")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def governed_setup(db) -> Governed:
    return governed(UNUSED_MODEL_SERVER)


@pytest.fixture
def owner(governed_setup) -> Tenant:
    key = key_for(governed_setup.application, "jobs:read", "jobs:write")
    return Tenant(governed_setup, key, client_with(key))


@pytest.fixture
def outsider(governed_setup) -> Tenant:
    other = Governed(
        application=ApplicationFactory(), policy=governed_setup.policy, deployments=governed_setup.deployments
    )
    key = key_for(other.application, "jobs:read", "jobs:write")
    return Tenant(other, key, client_with(key))


@pytest.fixture
def admin(governed_setup) -> Tenant:
    admin_app = ApplicationFactory()
    key = key_for(admin_app, "platform:admin")
    return Tenant(
        Governed(application=admin_app, policy=governed_setup.policy, deployments=governed_setup.deployments),
        key,
        client_with(key),
    )


PERSONAS = {
    "reviewer": [Role.REVIEWER],
    "reviewer2": [Role.REVIEWER],
    "admin": [Role.POLICY_ADMIN],
    "admin2": [Role.POLICY_ADMIN],
    "auditor": [Role.AUDITOR],
    "outsider": [],
}


@pytest.fixture
def people(db) -> dict:
    people = {name: UserFactory(roles=roles) for name, roles in PERSONAS.items()}
    people["superuser"] = UserFactory(is_superuser=True, is_staff=True)
    return people


@pytest.fixture
def as_user(people):
    """as_user("reviewer") -> a test client signed in as that persona."""

    def client_for(name: str) -> Client:
        client = Client()
        client.force_login(people[name])
        return client

    return client_for
