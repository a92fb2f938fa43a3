"""An attacker with superuser rights turns the triggers off and tampers; ledger_verify names where and what."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from audit import checkpoints
from tests.audit.ledger.ledger_helpers import append_committed, attacker, committed_db

pytestmark = committed_db


def _verify() -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("ledger_verify", stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, err.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def chain():
    """Ten sealed events, and a checkpoint at seq 10 (database and file)."""
    events = append_committed(10)
    assert checkpoints.checkpoint_write().seq == 10
    code, output = _verify()
    assert code == 0, output
    assert "ledger intact: 10 events verified (seq 1-10)" in output
    assert "last checkpoint seq 10" in output and "database+file" in output
    return {index + 1: event.pk for index, event in enumerate(events)}  # seq -> event id


def test_an_intact_chain_verifies(chain):
    code, output = _verify()
    assert code == 0
    assert output.count("\n") == 1  # one line


def test_it_catches_an_edited_body(chain):
    with attacker() as sql:
        sql.execute(
            "UPDATE audit_ledgerevent SET canonical = replace(canonical, '\"index\":4', '\"index\":40') WHERE id = %s",
            [chain[5]],
        )
    code, output = _verify()
    assert code == 1
    assert "at seq 5: edited" in output


def test_it_catches_a_deleted_middle_row(chain):
    with attacker() as sql:
        sql.execute("DELETE FROM audit_ledgerseal WHERE seq = 6")
        sql.execute("DELETE FROM audit_ledgerevent WHERE id = %s", [chain[6]])
    code, output = _verify()
    assert code == 1
    assert "at seq 6: deleted" in output


def test_it_catches_a_deleted_event_whose_seal_remains(chain):
    with attacker() as sql:
        sql.execute("DELETE FROM audit_ledgerevent WHERE id = %s", [chain[3]])
    code, output = _verify()
    assert code == 1
    assert "at seq 3: deleted" in output


def test_it_catches_an_inserted_row(chain):
    with attacker() as sql:
        # A forged event placed between seq 4 and seq 5 in chain order, never sealed.
        sql.execute(
            "INSERT INTO audit_ledgerevent (xact_id, canonical) SELECT xact_id, replace(canonical, '\"index\":3', "
            "'\"index\":99') FROM audit_ledgerevent WHERE id = %s",
            [chain[4]],
        )
    code, output = _verify()
    assert code == 1
    assert "at seq 5: inserted" in output


def test_it_catches_an_inserted_seal_with_renumbered_successors(chain):
    with attacker() as sql:
        sql.execute("ALTER TABLE audit_ledgerseal DROP CONSTRAINT audit_ledgerseal_pkey")
        sql.execute("UPDATE audit_ledgerseal SET seq = seq + 1 WHERE seq >= 7")
        sql.execute(
            "INSERT INTO audit_ledgerevent (xact_id, canonical) SELECT xact_id, canonical FROM audit_ledgerevent "
            "WHERE id = %s RETURNING id",
            [chain[6]],
        )
        forged_id = sql.fetchone()[0]
        sql.execute(
            """
            INSERT INTO audit_ledgerseal (seq, event_id, prev_hash, event_digest, hash, sealed_at)
            SELECT 7, %s, s.hash, d.digest, sha256(s.hash || d.digest), now()
              FROM audit_ledgerseal s, audit_ledgerevent e,
                   LATERAL (SELECT sha256(convert_to('{"event":' || e.canonical || ',"seq":7}', 'UTF8')) AS digest) d
             WHERE s.seq = 6 AND e.id = %s
            """,
            [forged_id, forged_id],
        )
    code, output = _verify()
    assert code == 1
    assert "at seq 7: inserted" in output


def test_it_catches_two_swapped_rows(chain):
    with attacker() as sql:
        sql.execute(
            """
            UPDATE audit_ledgerevent e SET canonical = o.canonical
              FROM audit_ledgerevent o
             WHERE (e.id, o.id) IN ((%(a)s, %(b)s), (%(b)s, %(a)s))
            """,
            {"a": chain[7], "b": chain[8]},
        )
    code, output = _verify()
    assert code == 1
    assert "at seq 7: reordered" in output


def test_it_catches_the_last_rows_deleted_after_a_checkpoint(chain):
    with attacker() as sql:
        sql.execute("DELETE FROM audit_ledgerseal WHERE seq > 8")
        sql.execute("DELETE FROM audit_ledgerevent WHERE id IN (%s, %s)", [chain[9], chain[10]])
    code, output = _verify()
    assert code == 1
    assert "at seq 9: truncated" in output
    assert "checkpoint at seq 10" in output


def test_the_file_catches_a_truncation_that_also_deleted_the_checkpoints(chain):
    with attacker() as sql:
        sql.execute("DELETE FROM audit_ledgercheckpoint")
        sql.execute("DELETE FROM audit_ledgerseal WHERE seq > 8")
        sql.execute("DELETE FROM audit_ledgerevent WHERE id IN (%s, %s)", [chain[9], chain[10]])
    code, output = _verify()
    assert code == 1
    assert "at seq 9: truncated" in output
    assert "checkpoints.jsonl line 1" in output


def test_the_file_catches_a_rewritten_chain_with_rewritten_checkpoints(chain):
    with attacker() as sql:
        sql.execute("DELETE FROM audit_ledgercheckpoint")
        sql.execute("DELETE FROM audit_ledgerseal")
        sql.execute(
            "UPDATE audit_ledgerevent SET canonical = replace(canonical, '\"index\":1,', '\"index\":11,') "
            "WHERE id = %s",
            [chain[2]],
        )
    # The attacker reseals the edited history from scratch; only the file remembers the old head.
    from audit import sealer

    assert sealer.seal_pending() == 10
    code, output = _verify()
    assert code == 1
    assert "at seq 10: rewritten" in output


def test_it_catches_a_forged_checkpoint_in_the_database(chain):
    genuine = checkpoints.database_checkpoints()[-1]
    forged = genuine.message.replace(genuine.hash, "0" * 64)
    with attacker() as sql:
        sql.execute(
            "INSERT INTO audit_ledgercheckpoint (message, signature, public_key) VALUES (%s, %s, %s)",
            [forged, genuine.signature, genuine.public_key],
        )
    code, output = _verify()
    assert code == 1
    assert "at seq 10: checkpoint signature invalid" in output


def test_it_catches_a_checkpoint_signed_by_another_key(chain):
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    genuine = checkpoints.database_checkpoints()[-1]
    message = genuine.message.replace(genuine.hash, "1" * 64)
    with attacker() as sql:
        sql.execute(
            "INSERT INTO audit_ledgercheckpoint (message, signature, public_key) VALUES (%s, %s, %s)",
            [
                message,
                base64.b64encode(key.sign(message.encode())).decode(),
                base64.b64encode(key.public_key().public_bytes_raw()).decode(),
            ],
        )
    code, output = _verify()
    assert code == 1
    assert "at seq 10: checkpoint signature invalid" in output and "untrusted key" in output


def test_it_catches_an_edited_checkpoint_file(chain, settings):
    path = settings.ARBITER_CHECKPOINT_FILE
    record = json.loads(path.read_text())
    record["message"] = record["message"].replace('"seq":10', '"seq":9')
    path.write_text(json.dumps(record) + "\n")
    code, output = _verify()
    assert code == 1
    assert "at seq 9: checkpoint signature invalid" in output
    assert "checkpoints.jsonl line 1" in output


def _verify_args(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("ledger_verify", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, err.getvalue()
    return 0, out.getvalue() + err.getvalue()


def test_a_window_verifies_from_the_prev_hash_of_its_first_event(chain):
    with attacker() as sql:
        sql.execute(
            "UPDATE audit_ledgerevent SET canonical = replace(canonical, '\"index\":7', '\"index\":70') WHERE id = %s",
            [chain[8]],
        )
    code, output = _verify_args("--since", "3", "--until", "6")
    assert code == 0, output
    assert "4 events verified (seq 3-6)" in output
    code, output = _verify_args("--since", "4")
    assert code == 1
    assert "at seq 8: edited" in output


def test_a_time_window_and_a_progress_bar(chain, capsys):
    from audit.models import LedgerEvent

    first = LedgerEvent.objects.get(pk=chain[2]).created_at
    last = LedgerEvent.objects.get(pk=chain[9]).created_at
    code, output = _verify_args("--since", first.isoformat(), "--until", last.isoformat(), "--progress")
    assert code == 0, output
    assert "7 events verified (seq 2-8)" in output
    assert "7/7" in capsys.readouterr().err  # the progress bar, on stderr


def test_a_job_check_catches_an_edit_in_that_job_only(chain):
    from audit.verify import verify_events_for

    other = append_committed(2, job="job-2")
    with attacker() as sql:
        sql.execute(
            "UPDATE audit_ledgerevent SET canonical = replace(canonical, '\"index\":1', '\"index\":9') WHERE id = %s",
            [other[1].pk],
        )
    assert verify_events_for(job_id="job-1").ok
    report = verify_events_for(job_id="job-2")
    assert not report.ok
    assert (report.problem.seq, report.problem.kind) == (12, "edited")


def test_parallel_stretches_verify_and_still_name_the_first_bad_seq(chain, monkeypatch):
    from audit import verify

    monkeypatch.setattr(verify, "PARALLEL_MINIMUM", 2)
    report = verify.verify_chain(workers=3)
    assert report.ok, report.summary()
    assert (report.events_verified, report.first_seq, report.last_seq) == (10, 1, 10)
    assert report.checkpoint is not None and report.checkpoint.seq == 10

    with attacker() as sql:
        sql.execute(
            "UPDATE audit_ledgerevent SET canonical = replace(canonical, '\"index\":8', '\"index\":80') WHERE id = %s",
            [chain[9]],
        )
    report = verify.verify_chain(workers=3)
    assert (report.problem.seq, report.problem.kind) == (9, "edited")
