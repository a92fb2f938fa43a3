"""Where the ledger's appends lose to a plain INSERT (issue #15): the same 8-writer transactions in modes, in
alternating blocks within one run, each mode's CPU per event on the client (the writer processes) and on the
server (their Postgres backends, from /proc), which a loaded machine inflates far less than a rate.

    python bench/ledger_ab.py [--modes plain,indexed,unsealed,append] [--rounds 3] [--per-writer 150]

Modes: `plain` (an INSERT into a bare table, as bench/ledger_bench.py's baseline), `indexed` (the same INSERT
into a copy of the event table: its generated columns and indexes), `unsealed` (`ledger.append` with the
seal after commit turned off in the writers: the events stay unsealed until the block ends), `append`
(`ledger.append` as shipped), `step` (`append_many` of a step's three events). Needs the server on this host.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import ledger_bench  # noqa: E402


def _backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _writer(database: str, name: str, commands, results) -> None:
    ledger_bench._django(database)
    from django.db import connection, transaction

    from audit import ledger, sealer
    from audit.ledger import Actor, canonical_event

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    shipped = sealer.seal_after_commit
    results.put(name)
    while (command := commands.get()) is not None:
        mode, count, start_at = command
        sealer.seal_after_commit = (lambda: None) if mode == "unsealed" else shipped
        while time.time() < start_at:
            time.sleep(0.001)
        began, client, server = time.perf_counter(), time.process_time(), _backend_cpu_s(backend)
        for index in range(count):
            actor, subject = Actor.worker(name), {"job": f"{name}-{index // 5}", "application": "bench"}
            with transaction.atomic():
                if mode == "step":
                    ledger.append_many(
                        [ledger.Entry(event, actor, subject, ledger_bench.BODY) for event in ledger_bench.STEP_EVENTS]
                    )
                elif mode in ("plain", "indexed"):
                    text = canonical_event(
                        event_type="model.called",
                        actor=actor,
                        subject=subject,
                        body=ledger_bench.BODY,
                        time=datetime.now(UTC),
                    )
                    with connection.cursor() as cursor:
                        cursor.execute(ledger_bench.BASELINE_INSERTS[mode], [text])
                else:
                    ledger.append("model.called", actor=actor, subject=subject, body=ledger_bench.BODY)
        results.put((began, time.perf_counter(), time.process_time() - client, _backend_cpu_s(backend) - server))
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="plain,indexed,unsealed,append")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-writer", type=int, default=150)
    parser.add_argument("--writers", type=int, default=8)
    options = parser.parse_args()
    modes = options.modes.split(",")
    ledger_bench._django()
    from django.db import connections

    from audit import sealer

    figures: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    ledger_bench._fresh_database()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    queues = [context.Queue() for _ in range(options.writers)]
    writers = [
        context.Process(target=_writer, args=(ledger_bench.SCRATCH, f"w{n}", queues[n], results))
        for n in range(options.writers)
    ]
    for writer in writers:
        writer.start()
    try:
        for _ in writers:
            results.get(timeout=120)
        for round_ in range(options.rounds):
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                sealer.seal_pending()
                for queue in queues:
                    queue.put((mode, options.per_writer, time.time() + 0.3))
                spans = [results.get(timeout=600) for _ in writers]
                events = options.writers * options.per_writer * (3 if mode == "step" else 1)
                seconds = max(span[1] for span in spans) - min(span[0] for span in spans)
                client_ms = sum(span[2] for span in spans) / events * 1000
                server_ms = sum(span[3] for span in spans) / events * 1000
                figures[mode].append((events / seconds, client_ms, server_ms))
                print(
                    f"round {round_} {mode:9s} {events / seconds:7,.0f} events/s  CPU per event: client "
                    f"{client_ms:.3f} ms, server {server_ms:.3f} ms  (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    finally:
        for queue in queues:
            queue.put(None)
        for writer in writers:
            writer.join(timeout=30)
        connections["default"].close()
        ledger_bench._scratch("drop")
    print("medians:")
    for mode, rows in figures.items():
        rate, client, server = (statistics.median(row[i] for row in rows) for i in range(3))
        print(
            f"  {mode:9s} {rate:7,.0f} events/s  CPU per event {client + server:.3f} ms "
            f"(client {client:.3f}, server {server:.3f})"
        )


if __name__ == "__main__":
    main()
