"""The demo's passwords and API key are written to the credentials file only (mode 0600), never to the
output that `make run` prints and that ends up in logs; and every demo password meets the policy."""

from __future__ import annotations

import io
import json
import stat

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.management import call_command

from controlplane.launcher import _banner

pytestmark = pytest.mark.django_db


def test_seeding_prints_where_the_secrets_are_not_the_secrets(settings, tmp_path, capsys):
    settings.DATA_DIR = tmp_path
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    path = tmp_path / "demo-credentials.json"
    credentials = json.loads(path.read_text())
    secrets = [user["password"] for user in credentials["users"]] + [credentials["api_key"]]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    _banner("http://127.0.0.1:8000", path)
    printed = out.getvalue() + capsys.readouterr().out
    assert str(path) in printed
    assert "admin" in printed and "reviewer" in printed  # who can sign in is still shown
    for secret in secrets:
        assert secret not in printed

    for user in credentials["users"]:
        validate_password(user["password"], get_user_model().objects.get(username=user["username"]))
