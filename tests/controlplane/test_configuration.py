"""Bad configuration ends with one line that names the problem, never a traceback."""

from __future__ import annotations

import pytest

from controlplane.env import ConfigError, database_from_url, env_bool, env_int
from tests.support.commands import PRODUCTION, manage


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
        (
            {"ARBITER_PROVIDER_TIMEOUT_S": "30", "ARBITER_BREAKER_WINDOW_S": "30"},
            "ARBITER_BREAKER_WINDOW_S=30 must be longer than ARBITER_PROVIDER_TIMEOUT_S=30",
        ),
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
