"""Ledger benchmark: appends per second with 1 and 8 writer processes, seal lag, and verification speed.

    python bench/ledger_bench.py [--quick]

Runs against a scratch database (arbiter_bench_ledger) on the configured server, created, migrated
and dropped here. Appends are real service-shaped transactions (BEGIN, one event, COMMIT, then
sealing after commit); verification runs `verify_chain` over 1,000,000 events (100,000 with
--quick) written with COPY.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCRATCH = "arbiter_bench_ledger"
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


def _writer(name: str, count: int, ready, start, spans) -> None:
    _django(SCRATCH)
    from django.db import connection, transaction

    from audit import ledger
    from audit.ledger import Actor

    connection.ensure_connection()
    ready.put(name)
    start.wait()
    began = time.perf_counter()
    for index in range(count):
        with transaction.atomic():
            ledger.append(
                "model.called",
                actor=Actor.worker(name),
                subject={"job": f"{name}-{index // 5}", "application": "bench", "step": index % 5},
                body=BODY,
            )
    spans.put((began, time.perf_counter()))
    connection.close()


def _appends(writers: int, per_writer: int) -> dict:
    from django.db import connection

    from audit import sealer

    context = multiprocessing.get_context("spawn")
    ready, start, finished = context.Queue(), context.Event(), context.Queue()
    processes = [
        context.Process(target=_writer, args=(f"w{n}", per_writer, ready, start, finished)) for n in range(writers)
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
    unsealed_at_end = sealer.seal_lag().unsealed
    sealer.seal_pending()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT extract(epoch FROM s.sealed_at - e.created_at) * 1000
              FROM audit_ledgerseal s JOIN audit_ledgerevent e ON e.id = s.event_id
             WHERE e.actor_id LIKE 'w%%' AND e.id > (SELECT coalesce(max(id), 0) - %s FROM audit_ledgerevent)
            """,
            [writers * per_writer],
        )
        lags = sorted(float(lag) for (lag,) in cursor.fetchall())
    return {
        "appends": writers * per_writer,
        "seconds": elapsed,
        "per_second": writers * per_writer / elapsed,
        "seal_lag_ms_p50": statistics.median(lags),
        "seal_lag_ms_p99": lags[int(len(lags) * 0.99) - 1],
        "seal_lag_ms_max": lags[-1],
        "unsealed_when_writers_finished": unsealed_at_end,
    }


def _generate(count: int) -> float:
    """Write `count` sealed events with COPY (the chain computed here, the way the sealer does)."""
    from datetime import UTC, datetime, timedelta

    from audit.ledger import Actor, canonical_event

    began = time.perf_counter()
    sha256 = hashlib.sha256
    raw = _connect(SCRATCH)
    start = datetime.now(UTC) - timedelta(days=30)
    running = bytes(32)
    batch = 50_000
    base_xact = 1  # a fresh database: no real event will be appended after these
    for offset in range(0, count, batch):
        events, seals = [], []
        for i in range(offset, min(offset + batch, count)):
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
            events.append((seq, base_xact + i // 4, canonical))
            seals.append((seq, seq, prev, digest, running))
        with raw.cursor() as cursor:
            with cursor.copy("COPY audit_ledgerevent (id, xact_id, canonical) FROM STDIN") as copy:
                for row in events:
                    copy.write_row(row)
            with cursor.copy(
                "COPY audit_ledgerseal (seq, event_id, prev_hash, event_digest, hash, sealed_at) FROM STDIN"
            ) as copy:
                for seq, event_id, prev, digest, hashed in seals:
                    copy.write_row((seq, event_id, prev, digest, hashed, start))
        raw.commit()
    with raw.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('audit_ledgerevent', 'id'), %s)", [count])
    raw.commit()
    raw.autocommit = True
    raw.execute("VACUUM ANALYZE audit_ledgerevent")
    raw.execute("VACUUM ANALYZE audit_ledgerseal")
    raw.close()
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
    from django.core.management import call_command
    from django.db import connections

    connections["default"].close()
    _scratch("create")
    connections["default"].settings_dict["NAME"] = SCRATCH
    call_command("migrate", "audit", verbosity=0, skip_checks=True)


def run(quick: bool = False) -> dict:
    _django()
    import tempfile

    from django.conf import settings
    from django.db import connections

    from audit import checkpoints
    from audit.verify import verify_chain

    original = connections["default"].settings_dict["NAME"]
    settings.ARBITER_CHECKPOINT_FILE = Path(tempfile.mkdtemp(prefix="ledger-bench-")) / "checkpoints.jsonl"
    figures: dict = {"quick": quick}
    try:
        _fresh_database()
        figures["append_1_writer"] = _appends(1, 1000 if quick else 4000)
        figures["append_8_writers"] = _appends(8, 400 if quick else 1500)

        _fresh_database()
        count = 100_000 if quick else 1_000_000
        figures["verify_generate_seconds"] = _generate(count)
        checkpoints.checkpoint_write()
        began = time.perf_counter()
        report = verify_chain(workers=min(4, os.cpu_count() or 1))  # as manage.py ledger_verify does
        seconds = time.perf_counter() - began
        if not report.ok or report.events_verified != count:
            raise RuntimeError(f"bench chain did not verify: {report.summary()}")
        figures["verify"] = {"events": count, "seconds": seconds, "per_second": count / seconds}
    finally:
        connections["default"].close()
        connections["default"].settings_dict["NAME"] = original
        _scratch("drop")
    return figures


def _table(figures: dict) -> str:
    one, eight, verified = figures["append_1_writer"], figures["append_8_writers"], figures["verify"]
    rows = [
        ("appends/s, 1 writer", f"{one['per_second']:,.0f}", f"{one['appends']:,} appends in {one['seconds']:.1f} s"),
        (
            "appends/s, 8 writers",
            f"{eight['per_second']:,.0f}",
            f"{eight['appends']:,} appends in {eight['seconds']:.1f} s (goal >= 5,000)",
        ),
        (
            "seal lag, 8 writers",
            f"p50 {eight['seal_lag_ms_p50']:.1f} ms",
            f"p99 {eight['seal_lag_ms_p99']:.1f} ms, max {eight['seal_lag_ms_max']:.1f} ms, "
            f"{eight['unsealed_when_writers_finished']} unsealed when the writers stopped",
        ),
        (
            "events verified/s",
            f"{verified['per_second']:,.0f}",
            f"{verified['events']:,} events in {verified['seconds']:.1f} s (goal >= 200,000)",
        ),
    ]
    width = max(len(label) for label, _, _ in rows)
    return "\n".join(f"{label:<{width}}  {value:>14}  {note}" for label, value, note in rows)


if __name__ == "__main__":
    print(_table(run(quick="--quick" in sys.argv[1:])))
