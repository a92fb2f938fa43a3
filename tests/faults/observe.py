"""What the stack did, read from its own database: a sampler of job states (for recovery times) and the
final accounting of a scenario's jobs — settled, duplicated, totals that add up."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import psycopg

SETTLED = {"completed", "failed", "blocked", "awaiting_approval", "rejected", "cancelled", "expired"}
TERMINAL_EVENTS = (
    "job.completed",
    "job.failed",
    "job.blocked",
    "job.approval_required",
    "job.rejected",
    "job.cancelled",
    "job.expired",
)


@dataclass
class Sample:
    at: float
    status: str
    attempt: int


@dataclass
class Sampler:
    """Job rows created since `since`, every `interval` s: each job's changes of status or attempt, with when
    they were seen; and when /healthz was green. A failed read (the database is down) is just a gap."""

    database_url: str
    since: datetime
    healthy: object  # () -> bool
    interval: float = 0.25
    timeline: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))
    health: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        connection = None
        tick = 0
        while True:
            try:
                if connection is None or connection.closed:
                    connection = psycopg.connect(self.database_url, connect_timeout=2, autocommit=True)
                rows = connection.execute(
                    "SELECT id::text, status, attempt FROM routing_job WHERE created_at >= %s", (self.since,)
                ).fetchall()
            except psycopg.Error:
                with contextlib.suppress(Exception):
                    connection.close()  # type: ignore[union-attr]
                connection = None
            else:
                now = time.time()
                for job_id, status, attempt in rows:
                    seen = self.timeline[job_id]
                    if not seen or (seen[-1].status, seen[-1].attempt) != (status, attempt):
                        seen.append(Sample(now, status, attempt))
            if tick % 4 == 0:
                self.health.append((time.time(), bool(self.healthy())))  # type: ignore[operator]
            tick += 1
            if self._stop.is_set():
                break
            # Asked to stop during the wait: one more read, so what settled since the last is not missed.
            self._stop.wait(self.interval)
        if connection is not None:
            connection.close()

    def paid_and_running(self, connection: psycopg.Connection) -> list[str]:
        """Jobs running an attempt that has already paid for a step: killed now, a later attempt should resume
        after that step rather than pay for it again."""
        with contextlib.suppress(psycopg.Error):
            rows = connection.execute(
                """SELECT DISTINCT j.id::text FROM routing_job j
                     JOIN routing_step s ON s.job_id = j.id AND s.attempt = j.attempt AND s.cost_usd > 0
                    WHERE j.status = 'running' AND j.created_at >= %s""",
                (self.since,),
            ).fetchall()
            return [row[0] for row in rows]
        return []

    def running_at(self, moment: float) -> dict[str, int]:
        """Jobs seen running at `moment` (their last sample before it), with the attempt they were on."""
        found = {}
        for job_id, samples in list(self.timeline.items()):
            before = [sample for sample in samples if sample.at <= moment]
            if before and before[-1].status == "running":
                found[job_id] = before[-1].attempt
        return found

    def progressed_after(self, job_id: str, attempt: int, moment: float) -> float | None:
        """When the job was next seen re-claimed (a later attempt) or settled, after `moment`."""
        for sample in self.timeline.get(job_id, []):
            if sample.at > moment and (sample.attempt > attempt or sample.status in SETTLED):
                return sample.at
        return None

    def reclaimed(self) -> list[str]:
        """Jobs seen on a second attempt: claimed again after their first attempt's lease ran out or was given up."""
        return [job_id for job_id, samples in list(self.timeline.items()) if any(s.attempt > 1 for s in samples)]

    def first_completion_after(self, moment: float) -> float | None:
        times = [
            sample.at
            for samples in list(self.timeline.values())
            for sample in samples
            if sample.at > moment and sample.status == "completed"
        ]
        return min(times, default=None)

    def healthy_after(self, moment: float) -> float | None:
        """The first moment after `moment` from which /healthz stayed green to the end."""
        green_since = None
        for at, ok in self.health:
            if at < moment:
                continue
            if ok and green_since is None:
                green_since = at
            elif not ok:
                green_since = None
        return green_since


@dataclass
class Accounting:
    jobs: int
    settled: int
    lost: list[str]  # accepted jobs not settled by the deadline
    statuses: Counter[str]
    duplicates: list[str]  # one line per duplicate found
    repaid: list[str]  # a step paid for again by a later attempt
    totals_wrong: list[str]  # a job whose totals are not the sum of every attempt's steps
    attempts: Counter[int]
    max_duration_s: float | None


def connect(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url, connect_timeout=5, autocommit=True)


def wait_settled(database_url: str, job_ids: set[str], timeout: float) -> set[str]:
    """Wait until every job is settled; the ids still unsettled at the deadline."""
    deadline = time.monotonic() + timeout
    pending = set(job_ids)
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.Error), connect(database_url) as connection:
            rows = connection.execute(
                "SELECT id::text, status FROM routing_job WHERE id::text = ANY(%s)", (list(pending),)
            ).fetchall()
            pending -= {job_id for job_id, status in rows if status in SETTLED}
        if not pending:
            return pending
        time.sleep(1)
    return pending


def account(database_url: str, *, since: datetime, accepted: set[str], unsettled: set[str]) -> Accounting:
    """Every job created since `since` (the clients' and any the clients never heard of), checked."""
    with connect(database_url) as connection:
        jobs = connection.execute(
            """SELECT id::text, status, attempt, total_cost_usd, total_tokens, idempotency_key, application_id,
                      extract(epoch FROM finished_at - created_at)
                 FROM routing_job WHERE created_at >= %s""",
            (since,),
        ).fetchall()
        ids = [row[0] for row in jobs]
        steps = connection.execute(
            """SELECT job_id::text, attempt, index, cost_usd, prompt_tokens + completion_tokens
                 FROM routing_step WHERE job_id::text = ANY(%s)""",
            (ids,),
        ).fetchall()
        events = connection.execute(
            """SELECT subject_job, event_type, canonical FROM audit_ledgerevent
                WHERE subject_job = ANY(%s) AND event_type = ANY(%s)""",
            (ids, ["model.called", *TERMINAL_EVENTS]),
        ).fetchall()

    duplicates: list[str] = []
    keys = Counter((row[6], row[5]) for row in jobs if row[5])
    duplicates += [f"{count} jobs for Idempotency-Key {key}" for (_, key), count in keys.items() if count > 1]
    terminal = Counter(job for job, event_type, _ in events if event_type in TERMINAL_EVENTS)
    duplicates += [f"job {job}: {count} terminal ledger events" for job, count in terminal.items() if count > 1]
    called = Counter(
        (job, body["attempt"], body["index"])
        for job, event_type, canonical in events
        if event_type == "model.called"
        for body in [json.loads(canonical)["body"]]
    )
    duplicates += [
        f"job {job}: model.called {n} times for attempt {a} step {i}" for (job, a, i), n in called.items() if n > 1
    ]

    by_job: dict[str, list[tuple[int, int, Decimal, int]]] = defaultdict(list)
    for job, attempt, index, cost, tokens in steps:
        by_job[job].append((attempt, index, cost, tokens))
    repaid = []
    totals_wrong = []
    for job_id, status, _attempt, total_cost, total_tokens, *_ in jobs:
        paid = Counter(index for _, index, cost, _ in by_job[job_id] if cost > 0)
        repaid += [f"job {job_id}: step {index} paid {n} times" for index, n in paid.items() if n > 1]
        if status in SETTLED:
            cost = sum((step[2] for step in by_job[job_id]), Decimal(0))
            tokens = sum(step[3] for step in by_job[job_id])
            if total_cost != cost or total_tokens != tokens:
                totals_wrong.append(
                    f"job {job_id}: totals {total_cost} USD / {total_tokens} tokens, steps {cost} / {tokens}"
                )
    durations = [row[7] for row in jobs if row[7] is not None]
    return Accounting(
        jobs=len(jobs),
        settled=sum(1 for row in jobs if row[1] in SETTLED),
        lost=sorted((accepted | {row[0] for row in jobs}) & unsettled),
        statuses=Counter(row[1] for row in jobs),
        duplicates=duplicates,
        repaid=repaid,
        totals_wrong=totals_wrong,
        attempts=Counter(row[2] for row in jobs),
        max_duration_s=float(max(durations)) if durations else None,
    )
