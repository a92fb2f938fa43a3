"""The serialisation: writers never wait; the sealer chains in (xact_id, id) order below the horizon."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import psycopg
from django.core.management import call_command
from django.db import connection

from audit import sealer
from audit.ledger import Actor, canonical_event
from audit.models import LedgerSeal
from audit.verify import verify_chain
from tests.audit.ledger.ledger_helpers import append_committed, committed_db


def _connect(dbname: str) -> psycopg.Connection:
    params = connection.get_connection_params()
    params["dbname"] = dbname
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    return psycopg.connect(**params)


@committed_db
def test_an_open_writer_holds_back_later_events_until_it_ends_then_comes_first():
    long_writer = _connect(connection.settings_dict["NAME"])
    try:
        canonical = canonical_event(
            event_type="job.submitted",
            actor=Actor.system("slow"),
            subject={"job": "slow"},
            body={},
            time=datetime.now(UTC),
        )
        long_writer.execute("INSERT INTO audit_ledgerevent (canonical) VALUES (%s)", [canonical])

        quick = append_committed(2, job="quick")  # committed after the slow writer began: must wait
        assert LedgerSeal.objects.count() == 0
        out = StringIO()
        call_command("ledger_verify", stdout=out)
        assert "2 unsealed" in out.getvalue()

        long_writer.commit()
    finally:
        long_writer.close()
    assert sealer.seal_pending() == 3
    chain = list(LedgerSeal.objects.order_by("seq").values_list("event__subject_job", "event_id"))
    assert chain == [("slow", chain[0][1]), ("quick", quick[0].pk), ("quick", quick[1].pk)]
    assert verify_chain().ok


@committed_db
def test_a_transaction_in_another_database_does_not_hold_back_sealing():
    elsewhere = _connect("postgres")
    try:
        elsewhere.execute("SELECT pg_current_xact_id()")  # an open transaction with an xid, elsewhere
        events = append_committed(2)
        assert LedgerSeal.objects.filter(event__in=[event.pk for event in events]).count() == 2
    finally:
        elsewhere.rollback()
        elsewhere.close()


@committed_db
def test_a_second_sealer_gives_way_instead_of_waiting():
    append_committed(1)
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [sealer.SEAL_LOCK_KEY])
        other = _connect(connection.settings_dict["NAME"])
        try:
            assert other.execute("SELECT audit_seal_pending(100, 1, false)").fetchone()[0] == -1
        finally:
            other.close()
            cursor.execute("ROLLBACK")
