"""Personas for the API: an owner application's keys, an outsider application, an admin key."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from audit.ledger import Actor
from controlplane.roles import Role
from routing.models import Application, Job
from routing.services.keys import api_key_create
from tests.factories import ApplicationFactory, UserFactory
from tests.pipeline.conftest import model_server, workers  # noqa: F401  (fixtures)
from tests.pipeline.setup import Governed, governed

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
def fast_password_hashing(settings):
    # The personas' users are made with passwords; PBKDF2 at full strength would dominate these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
