"""Ledger benchmark: appends per second with 1 and 8 writer processes, seal lag, the truncation window
(seal to signed checkpoint, with the checkpointer running), verification speed.

    python bench/ledger_bench.py [--quick]

Runs against a scratch database (arbiter_bench_ledger_<pid>) on the configured server, created,
migrated and dropped here. Appends are service-shaped transactions (BEGIN, one event, COMMIT, then
sealing after commit) from real processes, and step-shaped ones (BEGIN, a model call's three events in
one `append_many`, COMMIT: what a job's accepted step writes); verification runs `verify_chain` as
`ledger_verify` does (one process per CPU, at most 4) over 1,000,000 events (50,000 with --quick) written with
COPY. Figures from a loaded machine are not comparable with a quiet one: the table shows the load.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCRATCH = f"arbiter_bench_ledger_{os.getpid()}"
BODY = {
    "tier": "mini",
    "deployment": "mini-eu-1",
    "tokens": {"in": 812, "out": 120},
    "cost_usd": 0.00123,
    "latency_ms": 840,
    "confidence": 0.91,
    "threshold": 0.75,
    "prompt": "9f2c" * 16,
}


def _django(database: str | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    if database:
        from django.db import connections

        connections["default"].close()
        connections["default"].settings_dict["NAME"] = database


STEP_EVENTS = ("model.called", "confidence.scored", "job.completed")
# The baselines' INSERT: a bare table, and a copy of the event table (its generated columns and indexes).
BASELINE_INSERTS = {
    "plain": "INSERT INTO bench_plain_event (canonical) VALUES (%s) RETURNING id",
    "indexed": "INSERT INTO bench_indexed_event (canonical) VALUES (%s) RETURNING id",
}


def _writer(database: str, name: str, count: int, mode: str, ready, start, spans) -> None:
    _django(database)
    from django.db import connection, transaction

    from audit import ledger
    from audit.ledger import Actor, canonical_event

    connection.ensure_connection()
    ready.put(name)
    start.wait()
    began = time.perf_counter()
    per_transaction = len(STEP_EVENTS) if mode == "step" else 1
    for index in range(count // per_transaction):
        actor, subject = Actor.worker(name), {"job": f"{name}-{index // 5}", "application": "bench"}
        with transaction.atomic():
            if mode == "step":
                ledger.append_many([ledger.Entry(event, actor, subject, BODY) for event in STEP_EVENTS])
            elif mode in ("plain", "indexed"):
                # The same transaction with a plain INSERT: into a bare table (what the machine does without a
                # ledger), or into a copy of the event table (its generated columns and indexes, no chain).
                text = canonical_event(
                    event_type="model.called", actor=actor, subject=subject, body=BODY, time=datetime.now(UTC)
                )
                with connection.cursor() as cursor:
                    cursor.execute(BASELINE_INSERTS[mode], [text])
            else:
                ledger.append("model.called", actor=actor, subject=subject, body=BODY)
    spans.put((began, time.perf_counter()))
    connection.close()


def _appends(writers: int, per_writer: int, *, mode: str = "single") -> dict:
    from django.db import connection

    from audit import sealer

    context = multiprocessing.get_context("spawn")
    ready, start, finished = context.Queue(), context.Event(), context.Queue()
    processes = [
        context.Process(target=_writer, args=(SCRATCH, f"w{n}", per_writer, mode, ready, start, finished))
        for n in range(writers)
    ]
    for process in processes:
        process.start()
    try:
        for _ in range(writers):
            ready.get(timeout=120)
        start.set()
        spans = [finished.get(timeout=600) for _ in range(writers)]
    finally:
        for process in processes:
            process.join(timeout=30)
    elapsed = max(end for _, end in spans) - min(began for began, _ in spans)
    per_writer -= per_writer % (len(STEP_EVENTS) if mode == "step" else 1)
    if mode in ("plain", "indexed"):
        return {"appends": writers * per_writer, "seconds": elapsed, "per_second": writers * per_writer / elapsed}
    unsealed_at_end = sealer.seal_lag().unsealed
    sealer.seal_pending()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT extract(epoch FROM s.sealed_at - e.created_at) * 1000
              FROM audit_ledgerseal s JOIN audit_ledgerevent e ON e.id = s.event_id
             WHERE e.id > (SELECT max(id) FROM audit_ledgerevent) - %s
            """,
            [writers * per_writer],
        )
        lags = sorted(float(lag) for (lag,) in cursor.fetchall())
    return {
        "appends": writers * per_writer,
        "seconds": elapsed,
        "per_second": writers * per_writer / elapsed,
        "lag_p50_ms": statistics.median(lags),
        "lag_p99_ms": lags[max(int(len(lags) * 0.99) - 1, 0)],
        "lag_max_ms": lags[-1],
        "unsealed_when_writers_stopped": unsealed_at_end,
    }


def _checkpoint_window(writers: int, per_writer: int) -> dict:
    """8 writers with the checkpointer running (audit.checkpointer, as in celery beat): the appends/s it
    leaves, and for every event the time from its seal to the first checkpoint that signs it — the
    window in which a superuser could delete it unnoticed."""
    from django.conf import settings
    from django.db import connection

    from audit import sealer
    from audit.checkpointer import Checkpointer

    start_seq = sealer.chain_head().seq
    checkpointer = Checkpointer(every=settings.ARBITER_CHECKPOINT_EVERY_S).start()
    try:
        appended = _appends(writers, per_writer)
        head = sealer.chain_head().seq
        deadline = time.monotonic() + 60
        while checkpointer.written == 0 or _newest_checkpoint_seq() < head:
            if time.monotonic() > deadline:
                raise RuntimeError("the checkpointer did not sign the head within 60 s")
            time.sleep(0.05)
    finally:
        checkpointer.stop()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT extract(epoch FROM (SELECT min(c.created_at) FROM audit_ledgercheckpoint c WHERE c.seq >= s.seq)
                                      - s.sealed_at)
              FROM audit_ledgerseal s WHERE s.seq > %s
            """,
            [start_seq],
        )
        windows = sorted(float(window) for (window,) in cursor.fetchall())
    return {
        "per_second": appended["per_second"],
        "checkpoints": checkpointer.written,
        "window_p50_s": statistics.median(windows),
        "window_max_s": windows[-1],
    }


def _newest_checkpoint_seq() -> int:
    from audit.models import LedgerCheckpoint

    newest = LedgerCheckpoint.objects.order_by("-seq").values_list("seq", flat=True).first()
    return newest or 0


def _generate(count: int) -> float:
    """Write `count` sealed events with COPY, chained here exactly as the sealer chains them."""
    from datetime import timedelta

    from audit.ledger import Actor, canonical_event

    began = time.perf_counter()
    sha256 = hashlib.sha256
    start = datetime.now(UTC) - timedelta(days=30)
    running = bytes(32)
    with _connect(SCRATCH) as raw:
        for offset in range(0, count, 50_000):
            events, seals = [], []
            for i in range(offset, min(offset + 50_000, count)):
                seq = i + 1
                canonical = canonical_event(
                    event_type="model.called",
                    actor=Actor.worker(f"w{i % 8}"),
                    subject={"job": f"job-{i // 6}", "application": f"app-{i % 50}", "step": i % 6},
                    body={**BODY, "latency_ms": i % 2000},
                    time=start + timedelta(microseconds=i * 2500),
                )
                digest = sha256(b'{"event":%b,"seq":%d}' % (canonical.encode(), seq)).digest()
                prev, running = running, sha256(running + digest).digest()
                # Four events per transaction; a fresh database: no real event will come after these.
                events.append((seq, 1 + i // 4, canonical))
                seals.append((seq, seq, prev, digest, running, start))
            with raw.cursor() as cursor:
                with cursor.copy("COPY audit_ledgerevent (id, xact_id, canonical) FROM STDIN") as copy:
                    for row in events:
                        copy.write_row(row)
                columns = "seq, event_id, prev_hash, event_digest, hash, sealed_at"
                with cursor.copy(f"COPY audit_ledgerseal ({columns}) FROM STDIN") as copy:
                    for row in seals:
                        copy.write_row(row)
            raw.commit()
        raw.execute("SELECT setval(pg_get_serial_sequence('audit_ledgerevent', 'id'), %s)", [count])
        raw.commit()
        raw.autocommit = True
        raw.execute("VACUUM ANALYZE audit_ledgerevent")
        raw.execute("VACUUM ANALYZE audit_ledgerseal")
    return time.perf_counter() - began


def _connect(database: str, **options):
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    params["dbname"] = database
    return psycopg.connect(**params, **options)


def _scratch(action: str) -> None:
    with _connect("postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')
        if action == "create":
            admin.execute(f"CREATE DATABASE \"{SCRATCH}\" ENCODING 'UTF8' TEMPLATE template0")


def _fresh_database() -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, connections

    connections["default"].close()
    # The scratch database keeps its name when it is made again: its checkpoints need a file of their own.
    settings.ARBITER_CHECKPOINT_FILE = Path(tempfile.mkdtemp(prefix="ledger-bench-")) / "checkpoints.jsonl"
    _scratch("create")
    connections["default"].settings_dict["NAME"] = SCRATCH
    call_command("migrate", "audit", verbosity=0, skip_checks=True)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_plain_event (id bigserial PRIMARY KEY, canonical text NOT NULL)")
        # The event table's columns, generated columns, defaults and indexes; not its triggers (none fire on INSERT).
        cursor.execute("CREATE TABLE bench_indexed_event (LIKE audit_ledgerevent INCLUDING ALL)")


def run(quick: bool = False) -> dict:
    """Flat figures: appends/s with 1 and 8 writers, seal lag, events verified per second."""
    from bench.support import server_urls

    # The configured server, else the embedded one, started: on a fresh checkout nothing else has started
    # it yet when this bench runs first (`make bench` runs it before the benches that make scratch copies).
    server_urls()
    _django()
    from django.db import connections

    from audit import checkpoints
    from audit.verify import verify_chain

    original = connections["default"].settings_dict["NAME"]
    workers = min(4, os.cpu_count() or 1)
    figures: dict = {"quick": quick, "load_average_1m_at_start": os.getloadavg()[0]}
    try:
        _fresh_database()
        baseline = _appends(8, 200 if quick else 1500, mode="plain")
        indexed = _appends(8, 200 if quick else 1500, mode="indexed")
        one = _appends(1, 500 if quick else 4000)
        eight = _appends(8, 200 if quick else 1500)
        steps = _appends(8, 300 if quick else 3000, mode="step")
        window = _checkpoint_window(8, 1000 if quick else 1500)
        figures.update(
            {
                "appends_per_s_1_writer": one["per_second"],
                "appends_per_s_8_writers": eight["per_second"],
                "appends_per_s_8_writers_3_per_transaction": steps["per_second"],
                "seal_lag_p99_ms_with_8_writers_3_per_transaction": steps["lag_p99_ms"],
                "plain_inserts_per_s_8_writers_same_transactions": baseline["per_second"],
                "event_table_inserts_per_s_8_writers_same_transactions": indexed["per_second"],
                "seal_lag_p50_ms_with_8_writers": eight["lag_p50_ms"],
                "seal_lag_p99_ms_with_8_writers": eight["lag_p99_ms"],
                "seal_lag_max_ms_with_8_writers": eight["lag_max_ms"],
                "unsealed_when_8_writers_stopped": eight["unsealed_when_writers_stopped"],
                "appends_per_s_8_writers_with_checkpointer": window["per_second"],
                "checkpoints_written_by_checkpointer": window["checkpoints"],
                "truncation_window_p50_ms": window["window_p50_s"] * 1000,
                "truncation_window_max_ms": window["window_max_s"] * 1000,
            }
        )

        _fresh_database()
        count = 50_000 if quick else 1_000_000
        figures["verify_generate_seconds"] = _generate(count)
        checkpoints.checkpoint_write()
        began = time.perf_counter()
        report = verify_chain(workers=workers)
        seconds = time.perf_counter() - began
        if not report.ok or report.events_verified != count:
            raise RuntimeError(f"bench chain did not verify: {report.summary()}")
        figures.update(
            {
                "verified_events": count,
                "verify_workers": workers,
                "verify_seconds": seconds,
                "verified_events_per_s": count / seconds,
                "load_average_1m_at_end": os.getloadavg()[0],
            }
        )
    finally:
        connections["default"].close()
        connections["default"].settings_dict["NAME"] = original
        _scratch("drop")
    return figures


def _table(figures: dict) -> str:
    rows = [
        ("appends/s, 1 writer", f"{figures['appends_per_s_1_writer']:,.0f}", ""),
        ("appends/s, 8 writers", f"{figures['appends_per_s_8_writers']:,.0f}", "goal >= 0.8 x plain INSERT/s"),
        (
            "appends/s, 8 writers, 3 a transaction",
            f"{figures['appends_per_s_8_writers_3_per_transaction']:,.0f}",
            "goal >= 5,000; a job step's shape: one append_many of model.called, confidence.scored, job.completed",
        ),
        (
            "plain INSERT/s, 8 writers",
            f"{figures['plain_inserts_per_s_8_writers_same_transactions']:,.0f}",
            "same transactions into a bare table, no ledger: this machine's ceiling",
        ),
        (
            "INSERT/s into the event table, 8 writers",
            f"{figures['event_table_inserts_per_s_8_writers_same_transactions']:,.0f}",
            "same transactions into a copy of the event table (generated columns, indexes), no sealing",
        ),
        (
            "seal lag, 8 writers",
            f"p50 {figures['seal_lag_p50_ms_with_8_writers']:.1f} ms",
            f"p99 {figures['seal_lag_p99_ms_with_8_writers']:.1f} ms, "
            f"max {figures['seal_lag_max_ms_with_8_writers']:.1f} ms, "
            f"{figures['unsealed_when_8_writers_stopped']} unsealed when the writers stopped",
        ),
        (
            "appends/s, 8 writers, checkpointer on",
            f"{figures['appends_per_s_8_writers_with_checkpointer']:,.0f}",
            f"{figures['checkpoints_written_by_checkpointer']} checkpoints; truncation window (seal to signed) "
            f"p50 {figures['truncation_window_p50_ms']:,.0f} ms, max {figures['truncation_window_max_ms']:,.0f} ms",
        ),
        (
            "events verified/s",
            f"{figures['verified_events_per_s']:,.0f}",
            f"{figures['verified_events']:,} events in {figures['verify_seconds']:.1f} s, "
            f"{figures['verify_workers']} processes (goal >= 200,000)",
        ),
        (
            "load average (1 min)",
            f"{figures['load_average_1m_at_start']:.1f}",
            f"at start; {figures['load_average_1m_at_end']:.1f} at end; {os.cpu_count()} CPUs",
        ),
    ]
    width = max(len(label) for label, _, _ in rows)
    return "\n".join(f"{label:<{width}}  {value:>14}  {note}" for label, value, note in rows)


if __name__ == "__main__":
    print(_table(run(quick="--quick" in sys.argv[1:])))
