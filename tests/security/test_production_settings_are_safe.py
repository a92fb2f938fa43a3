"""Production refuses to start on an unsafe configuration, with one line that says what to fix; and the
defaults every deployment gets are safe: 12-character passwords, sessions that end when left unused."""

from __future__ import annotations

import base64
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from controlplane.roles import Role
from controlplane.signin import LAST_ACTIVE_AT, SIGNED_IN_AT
from tests.support.commands import PRODUCTION, manage
from tests.support.factories import UserFactory

PASSWORD = "correct horse battery staple"


def assert_refused_with_one_line(env: dict[str, str], says: str) -> None:
    result = manage("check", "--deploy", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_production_without_a_metrics_token_does_not_start():
    env = {key: value for key, value in PRODUCTION.items() if key != "ARBITER_METRICS_TOKEN"}
    assert_refused_with_one_line(env, "ARBITER_METRICS_TOKEN is required")


@pytest.mark.parametrize("hosts", ["*", "arbiter.example.com,*"])
def test_production_does_not_accept_any_host(hosts):
    assert_refused_with_one_line({**PRODUCTION, "ALLOWED_HOSTS": hosts}, "ALLOWED_HOSTS='*' is not allowed")


@pytest.mark.parametrize(("key", "says"), [("AAAAAA==", "decodes to 4 bytes"), ("not base64!", "decodes to 0 bytes")])
def test_production_refuses_a_short_ledger_signing_key(key, says):
    assert_refused_with_one_line({**PRODUCTION, "ARBITER_LEDGER_SIGNING_KEY": key}, says)


def test_production_refuses_a_signing_key_readable_from_the_data_directory(tmp_path):
    """Issue 16: a key beside the data lets whoever rewrites the data re-sign it (audit/EVIDENCE.md)."""
    (tmp_path / "ledger-signing.key").write_text(PRODUCTION["ARBITER_LEDGER_SIGNING_KEY"] + "\n")
    env = {**PRODUCTION, "ARBITER_DATA_DIR": str(tmp_path)}
    assert_refused_with_one_line(env, f"the ledger signing key is readable from the data directory ({tmp_path}/")

    # A retired key there is as bad when its checkpoints still count.
    retired = Ed25519PrivateKey.generate()
    seed = retired.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    (tmp_path / "ledger-signing.key").write_text(base64.b64encode(seed).decode() + "\n")
    public = base64.b64encode(retired.public_key().public_bytes_raw()).decode()
    assert_refused_with_one_line(
        {**env, "ARBITER_LEDGER_TRUSTED_PUBLIC_KEYS": public}, "the ledger signing key is readable from the data"
    )
    # A development key that signs nothing production trusts is no risk to the evidence.
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_safe_production_configuration_passes_check_deploy():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_a_password_needs_twelve_characters():
    user = UserFactory()
    with pytest.raises(ValidationError, match="at least 12 characters"):
        validate_password("xq7-Pvw-2mK", user)  # 11
    validate_password("xq7-Pvw-2mKz", user)  # 12


@pytest.fixture
def signed_in(db) -> Client:
    user = UserFactory(password=PASSWORD, roles=[Role.REVIEWER])
    client = Client()
    assert client.post(reverse("login"), {"username": user.username, "password": PASSWORD}).status_code == 302
    return client


def _set(client: Client, **values: int) -> None:
    session = client.session
    session.update(values)
    session.save()


def test_a_session_left_unused_for_the_idle_limit_is_signed_out(signed_in):
    assert settings.SESSION_IDLE_SECONDS == 1800
    # Used a moment within the limit: still signed in.
    _set(signed_in, **{LAST_ACTIVE_AT: int(time.time()) - settings.SESSION_IDLE_SECONDS + 60})
    assert signed_in.get(reverse("dashboard")).status_code == 200
    # That use counts: the idle clock started again.
    assert signed_in.session[LAST_ACTIVE_AT] >= int(time.time()) - 5
    _set(signed_in, **{LAST_ACTIVE_AT: int(time.time()) - settings.SESSION_IDLE_SECONDS - 1})
    response = signed_in.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert signed_in.get(reverse("dashboard")).status_code == 302  # signed out, not just redirected once


def test_a_page_polling_by_itself_does_not_keep_a_session_alive(signed_in):
    idle_since = int(time.time()) - settings.SESSION_IDLE_SECONDS + 60
    _set(signed_in, **{LAST_ACTIVE_AT: idle_since})
    # The review queue's count refreshes itself every 10 s (templates/review/queue.html).
    assert signed_in.get(reverse("queue-count"), HTTP_HX_REQUEST="true", HTTP_X_ARBITER_POLL="1").status_code == 200
    assert signed_in.session[LAST_ACTIVE_AT] == idle_since


def test_a_busy_session_still_ends_at_its_absolute_lifetime(signed_in):
    assert signed_in.get(reverse("dashboard")).status_code == 200
    _set(signed_in, **{SIGNED_IN_AT: int(time.time()) - settings.SESSION_ABSOLUTE_SECONDS - 1})
    response = signed_in.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert signed_in.get(reverse("dashboard")).status_code == 302  # signed out, not just redirected once
