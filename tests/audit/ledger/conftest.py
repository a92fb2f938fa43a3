"""Fixtures of the ledger tests: a fixed signing key, a checkpoint file per test."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.db.backends.postgresql.operations import DatabaseOperations

TEST_SEED = base64.b64encode(
    Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
).decode()


@pytest.fixture(scope="session", autouse=True)
def _flush_past_append_only_triggers():
    """Test-database housekeeping, not tampering: Django empties the tables after every
    transactional test with one TRUNCATE, which the ledger's triggers refuse. The flush runs with
    triggers off for its own transaction only (SET LOCAL, superuser). This belongs in the root
    conftest once other apps have transactional tests that write ledger events."""
    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        statements = original(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET LOCAL session_replication_role = replica", *statements] if statements else statements

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original


@pytest.fixture(autouse=True)
def ledger_settings(settings, tmp_path):
    settings.ARBITER_LEDGER_SIGNING_KEY = TEST_SEED
    settings.ARBITER_LEDGER_TRUSTED_PUBLIC_KEYS = []
    settings.ARBITER_CHECKPOINT_FILE = tmp_path / "checkpoints.jsonl"
    settings.ARBITER_REDACTORS = []
    settings.ARBITER_PAYLOAD_RETENTION = {}
    return settings


@pytest.fixture(autouse=True)
def _start_from_an_empty_ledger(request):
    """Tests that commit expect a ledger of their own. Other suites commit events without flushing
    (the ledger refuses TRUNCATE), so empty the audit tables first — test-database housekeeping with
    triggers off for this one transaction, the same as the flush above."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not marker.kwargs.get("transaction"):
        return
    request.getfixturevalue("_django_db_helper")
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "TRUNCATE audit_ledgerevent, audit_ledgerseal, audit_ledgercheckpoint, audit_payloadreference, "
            "audit_payload"
        )
