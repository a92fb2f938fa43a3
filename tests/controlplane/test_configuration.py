"""Bad configuration ends with one line that names the problem, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.env import ConfigError, database_from_url, env_bool, env_int

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


def test_it_reads_a_socket_database_url():
    database = database_from_url(
        "DATABASE_URL", "postgresql://postgres@/arbiter?host=/tmp/pg&sslmode=disable"
    )
    assert database["NAME"] == "arbiter"
    assert database["HOST"] == "/tmp/pg"
    assert database["OPTIONS"] == {"sslmode": "disable"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///db.sqlite3", "PostgreSQL only"),
        ("postgres://host:notaport/db", "malformed port"),
        ("postgres://host:5432", "names no database"),
    ],
)
def test_it_refuses_a_bad_database_url(url, message):
    with pytest.raises(ConfigError, match=message):
        database_from_url("DATABASE_URL", url)


def test_it_refuses_a_bad_boolean_and_integer(monkeypatch):
    monkeypatch.setenv("DEBUG", "perhaps")
    with pytest.raises(ConfigError, match="DEBUG='perhaps' is not a boolean"):
        env_bool("DEBUG", default=False)
    monkeypatch.setenv("ARBITER_PORT", "eighty")
    with pytest.raises(ConfigError, match="is not an integer"):
        env_int("ARBITER_PORT", 8000)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://root@localhost/arbiter"}, "DATABASE_URL must be a postgres:// URL"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"CELERY_BROKER_URL": "kafka://localhost"}, "CELERY_BROKER_URL must be"),
        ({**PRODUCTION, "SECRET_KEY": ""}, "SECRET_KEY is required"),
        ({**PRODUCTION, "DATABASE_URL": ""}, "DATABASE_URL is required"),
    ],
)
def test_it_ends_a_bad_configuration_with_one_line(env, message):
    result = manage("check", env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_it_passes_check_deploy_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout
