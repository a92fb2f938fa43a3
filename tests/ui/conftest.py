"""Personas for the UI: two reviewers, two policy admins, an auditor, someone with no role, a superuser."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from controlplane.roles import Role
from tests.factories import UserFactory

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


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # The personas' passwords are hashed for every test; PBKDF2 at full strength would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_dashboard_cache():
    cache.clear()
    yield
    cache.clear()


from tests.pipeline.conftest import model_server, wait_for, workers  # noqa: E402, F401 - shared fixtures
