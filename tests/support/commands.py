"""manage.py run in a subprocess with only the environment a test gives it, and a production environment
that passes Django's deployment checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "ARBITER_ENV": "production",
    "SECRET_KEY": "x" * 20 + "production-secret-key-for-the-check-deploy-test-0123456789",
    "ALLOWED_HOSTS": "arbiter.example.com",
    "DATABASE_URL": "postgresql://arbiter:secret@db.example.com:5432/arbiter",
    "REDIS_URL": "redis://cache.example.com:6379/0",
    "ARBITER_LEDGER_SIGNING_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "ARBITER_METRICS_TOKEN": "metrics-token-for-the-check-deploy-test",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ARBITER_", "DATABASE_", "REDIS_", "CELERY_"))
    }
    # The browser tests' DJANGO_ALLOW_ASYNC_UNSAFE (set for Playwright's event loop) is no deployment's.
    for name in ("SECRET_KEY", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        clean.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
