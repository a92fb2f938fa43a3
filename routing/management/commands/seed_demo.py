"""Seed the demo: users per role, and (as the other parts land) a catalog, a policy and an application.

Idempotent: a second run keeps every password and key it wrote the first time, so
`.data/demo-credentials.json` stays true across restarts.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from controlplane.roles import Role, ensure_role_groups

DEMO_USERS = [
    ("admin", Role.POLICY_ADMIN),
    ("admin2", Role.POLICY_ADMIN),
    ("reviewer", Role.REVIEWER),
    ("reviewer2", Role.REVIEWER),
    ("auditor", Role.AUDITOR),
    ("auditor2", Role.AUDITOR),
]


class Command(BaseCommand):
    help = "Create the demo users, catalog, policy and application key (idempotent)."

    def handle(self, *args: object, **options: object) -> None:
        path = Path(settings.DATA_DIR) / "demo-credentials.json"
        credentials = json.loads(path.read_text()) if path.exists() else {}
        passwords = {user["username"]: user["password"] for user in credentials.get("users", [])}
        with transaction.atomic():
            ensure_role_groups()
            users = []
            for username, role in DEMO_USERS:
                # At least ARBITER_PASSWORD_MIN_LENGTH (12) characters, like every password.
                password = passwords.get(username) or f"{username}-{secrets.token_urlsafe(12)}"
                user, _ = get_user_model().objects.get_or_create(username=username)
                if not user.check_password(password):
                    user.set_password(password)
                    user.save(update_fields=["password"])
                user.groups.add(Group.objects.get(name=role.value))
                users.append({"username": username, "password": password, "role": role.value})
        from routing.demo.seed import seed_all

        api_key = seed_all(key_owner=get_user_model().objects.get(username=DEMO_USERS[0][0]))
        if api_key:
            credentials["api_key"] = api_key
        credentials["users"] = users
        credentials["base_url"] = f"http://127.0.0.1:{_port()}"
        credentials["model_server_url"] = settings.ARBITER_MODELSERVER_URL
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 (never readable by others, not even for a moment); chmod for a file from before.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as credentials_file:
            credentials_file.write(json.dumps(credentials, indent=2) + "\n")
        path.chmod(0o600)
        # Only where they are: this output ends up in logs.
        self.stdout.write(f"demo seeded; passwords and the API key are in {path} (mode 0600)")


def _port() -> str:
    return os.environ.get("PORT") or os.environ.get("ARBITER_PORT") or "8000"
