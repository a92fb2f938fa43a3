"""Guessing passwords does not work: after a few wrong ones for a username from one address, that pair is
locked out for a while (even the right password), the page says so, and every attempt is recorded."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user():
    return UserFactory(password=PASSWORD)


def sign_in(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def guess(client: Client, username: str, times: int) -> list[int]:
    return [sign_in(client, username, f"wrong-guess-{n}").status_code for n in range(times)]


def test_the_right_password_after_too_many_wrong_ones_is_locked_out(user):
    client = Client(REMOTE_ADDR="203.0.113.7")
    statuses = guess(client, user.username, settings.AXES_FAILURE_LIMIT)
    assert statuses[:-1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)  # "did not match", form again
    response = sign_in(client, user.username, PASSWORD)
    assert response.status_code == 429
    text = response.content.decode()
    assert "temporarily locked" in text and "15 minutes" in text
    assert "Traceback" not in text
    assert client.get(reverse("dashboard")).status_code == 302  # still signed out


def test_the_lock_is_per_username_and_address(user):
    guess(Client(REMOTE_ADDR="203.0.113.7"), user.username, settings.AXES_FAILURE_LIMIT)
    # The same person from another address, and another person from the guesser's address, get in.
    assert sign_in(Client(REMOTE_ADDR="198.51.100.20"), user.username, PASSWORD).status_code == 302
    other = UserFactory(password=PASSWORD)
    assert sign_in(Client(REMOTE_ADDR="203.0.113.7"), other.username, PASSWORD).status_code == 302


def test_the_lock_ends_after_the_cool_off(user):
    client = Client(REMOTE_ADDR="203.0.113.7")
    guess(client, user.username, settings.AXES_FAILURE_LIMIT)
    assert sign_in(client, user.username, PASSWORD).status_code == 429
    AccessAttempt.objects.filter(username=user.username).update(
        attempt_time=AccessAttempt.objects.get(username=user.username).attempt_time
        - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1)
    )
    assert sign_in(client, user.username, PASSWORD).status_code == 302


def test_the_django_admin_sign_in_is_throttled_too(user):
    user.is_staff = True
    user.save()
    client = Client(REMOTE_ADDR="203.0.113.9")
    for n in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": user.username, "password": f"wrong-{n}"})
    response = client.post("/admin/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429


def test_failed_and_successful_sign_ins_are_recorded_and_logged(user, caplog):
    caplog.set_level(logging.INFO, logger="arbiter.signin")
    client = Client(REMOTE_ADDR="203.0.113.7")
    guess(client, user.username, 2)
    assert sign_in(client, user.username, PASSWORD).status_code == 302
    failures = AccessFailureLog.objects.filter(username=user.username)
    assert failures.count() == 2 and {f.ip_address for f in failures} == {"203.0.113.7"}
    assert AccessLog.objects.filter(username=user.username, ip_address="203.0.113.7").exists()
    lines = [record.getMessage() for record in caplog.records if record.name == "arbiter.signin"]
    assert lines.count(f"sign-in failed: user={user.username} address=203.0.113.7") == 2
    assert f"sign-in succeeded: user={user.username} address=203.0.113.7" in lines
    assert not any("wrong-guess" in line or PASSWORD in line for line in lines)
