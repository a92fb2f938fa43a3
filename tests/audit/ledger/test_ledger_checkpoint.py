"""Checkpoints: signed, kept in the database and the file; the key from the environment or dev file."""

from __future__ import annotations

import base64
import json
import stat
from io import StringIO

import pytest
from django.core.management import call_command

from audit import checkpoints
from audit.models import LedgerCheckpoint
from audit.tasks import expire_payloads, seal_ledger
from tests.audit.ledger.ledger_helpers import append_committed, committed_db

pytestmark = committed_db


def test_the_command_signs_the_head_into_the_database_and_the_file(settings):
    append_committed(3)
    out = StringIO()
    call_command("ledger_checkpoint", stdout=out)
    assert "checkpoint seq 3" in out.getvalue()

    row = LedgerCheckpoint.objects.get()
    line = json.loads(settings.ARBITER_CHECKPOINT_FILE.read_text())
    assert line == {"message": row.message, "signature": row.signature, "public_key": row.public_key}
    assert json.loads(row.message)["ledger"] == checkpoints.ledger_name()
    assert row.public_key == checkpoints.public_key_b64()

    again = StringIO()
    call_command("ledger_checkpoint", stdout=again)
    assert "nothing new" in again.getvalue()
    assert LedgerCheckpoint.objects.count() == 1


def test_the_public_key_is_printable():
    out = StringIO()
    call_command("ledger_checkpoint", "--public-key", stdout=out)
    assert base64.b64decode(out.getvalue().strip()) == base64.b64decode(checkpoints.public_key_b64())
    assert len(base64.b64decode(out.getvalue().strip())) == 32
    pem = StringIO()
    call_command("ledger_checkpoint", "--public-key", "--pem", stdout=pem)
    assert pem.getvalue().startswith("-----BEGIN PUBLIC KEY-----")


def test_in_development_a_key_is_generated_once_with_owner_only_permissions(settings, tmp_path):
    settings.ARBITER_LEDGER_SIGNING_KEY = None
    settings.DATA_DIR = tmp_path
    first = checkpoints.public_key_b64()
    key_file = tmp_path / checkpoints.DEV_KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text())) == 32
    checkpoints._signing_key.cache_clear()
    assert checkpoints.public_key_b64() == first


def test_a_malformed_key_is_refused_with_a_clear_message(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.ARBITER_LEDGER_SIGNING_KEY = base64.b64encode(b"short").decode()
    with pytest.raises(ImproperlyConfigured, match="32 bytes"):
        checkpoints.signing_key()


def test_the_beat_tasks_call_their_services():
    append_committed(2)
    assert seal_ledger() == 0  # already sealed after commit
    assert expire_payloads() == 0
