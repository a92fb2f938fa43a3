"""At scale: server time of the review queue page, the job detail page and `GET /api/v1/jobs` over a scratch
database holding a million jobs (quick: 30,000) and five million ledger events (quick: 150,000).

The rows are not invented field by field: three real jobs (accepted on nano; escalated nano → mini; held
for approval) are run through the real pipeline against the local model server first, and their job,
step, approval and ledger rows are the templates that the generator copies with new ids and times, so
column sizes and event bodies are what the product writes. Everything is loaded with `COPY`, by writer
threads on their own connections while the generator builds the next batch, with the secondary indexes
dropped for the load and built again after it. Ledger events are inserted as canonical text only
(Postgres generates the indexed columns: nine JSON extractions a row, most of the load's time); no
seals — chain verification is not what is measured here (the job page reads seals with a LEFT JOIN,
which then finds nothing; a sealed ledger adds one index probe per event shown).

Server time is measured in-process with Django's test `Client` (routing, middleware, view, queries,
template rendering, no socket), ~100 requests per page after a warm-up, as a logged-in reviewer for the
UI pages and with an application key (jobs:read, rate limit counted in Redis) for the API, after
importing `controlplane.wsgi` as gunicorn does (its garbage-collector set-up is part of server time).
Each page reports wall and CPU time per request (CPU is what other people's load on the machine inflates
least) and the full garbage collections during its requests. For each page the queries it runs are
captured once; a page over its goal gets `EXPLAIN (ANALYZE, BUFFERS)` of its slowest queries in the JSON.

    python bench/scale_bench.py [--quick] [--jobs N] [--events N] [--keep] [--database NAME] [--json]
    python bench/scale_bench.py --reuse --database NAME      # measure again a database kept with --keep
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import drop_database, percentile, scratch_database, server_urls, start_modelserver

# One name per checkout: several people share one Postgres server here, and a run drops its database first.
DATABASE = "arbiter_bench_scale_" + hashlib.sha256(str(Path(__file__).resolve()).encode()).hexdigest()[:8]
GOAL_MS = 100.0
APPLICATIONS = 20
LARGEST_SHARE = 0.4  # the first application submits 40% of all jobs; its list is the one measured
HISTORY_DAYS = 90
HELD_WINDOW_DAYS = 14  # pending approvals are recent: older ones have been decided or have expired
HELD_SHARE = 0.01  # of all jobs: a backlog of 10,000 held jobs at a million
# (archetype, job status, approval status or None, share of jobs outside the held window)
OUTCOMES: list[tuple[str, str, str | None, float]] = [
    ("accepted", "completed", None, 0.81),
    ("escalated", "completed", None, 0.10),
    ("held", "completed", "approved", 0.02),
    ("held", "rejected", "rejected", 0.005),
    ("held", "expired", "expired", 0.005),
    ("accepted", "failed", None, 0.04),
    ("accepted", "blocked", None, 0.005),
    ("accepted", "cancelled", None, 0.005),
]
ARCHETYPE_PROMPTS = {
    "accepted": ("[task:classification] [confidence:nano=0.95]", {}),
    "escalated": ("[task:classification] [confidence:nano=0.3,mini=0.95]", {}),
    "held": ("[task:classification] [confidence:nano=0.95]", {"pii": True}),
}
# Which events survive when a job's share of the ledger target is smaller than its template.
EVENT_PRIORITY = [
    "job.submitted",
    "route.decided",
    "model.called",
    "job.completed",
    "approval.requested",
    "job.escalated",
    "confidence.scored",
    "job.claimed",
]
REQUESTS_PER_PAGE = {True: 40, False: 100}
# Marks in template text where a copy puts its own ids and times (JSON leaves "@" unescaped).
JOB_MARK = "@@JOB@@"
APP_MARK = "@@APP@@"
APPROVAL_MARK = "@@APR@@"
TIME_MARK = "@@T{}@@"
STEP_MARK = "@@S{}@@"
TICKET_MARK = "@@N@@"
# Columns a copy of a template row sets itself (the job's request keeps its text but for TICKET_MARK).
JOB_VARYING = frozenset(
    {
        "id",
        "application_id",
        "created_at",
        "dispatched_at",
        "started_at",
        "finished_at",
        "status",
        "claimed_by",
        "lease_expires_at",
        "metadata",
    }
)
STEP_VARYING = frozenset({"id", "job_id", "created_at"})
APPROVAL_VARYING = frozenset({"id", "job_id", "status", "created_at", "expires_at", "resolved_at"})


# --- set-up -------------------------------------------------------------------------------------------


def _setup_django(database_url: str, redis_url: str, queue: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ARBITER_QUEUE=queue,
        # Counted in Redis like in production (its round trip is part of every API request), never reached.
        ARBITER_RATE_LIMIT_PER_MINUTE="1000000",
        DJANGO_SETTINGS_MODULE="controlplane.settings",
    )
    import django

    django.setup()


def _seed(model_url: str) -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, User

    from audit.ledger import Actor
    from controlplane.roles import Role, ensure_role_groups
    from routing.demo.seed import seed_catalog, seed_policy
    from routing.models import Application
    from routing.services.keys import api_key_create

    settings.ARBITER_MODELSERVER_URL = model_url
    seed_catalog()
    policy = seed_policy()
    ensure_role_groups()
    reviewers = []
    for name in ("bench-reviewer", "bench-reviewer-2"):
        user = User.objects.create_user(name, password=uuid.uuid4().hex)
        user.groups.add(Group.objects.get(name=Role.REVIEWER.value))
        reviewers.append(user)
    applications = [
        Application.objects.create(slug=f"scale-{n:02d}", name=f"Scale application {n:02d}")
        for n in range(APPLICATIONS)
    ]
    _, key = api_key_create(application=applications[0], scopes=["jobs:read"], actor=Actor.system("bench"),
        created_by=get_user_model().objects.get_or_create(username="bench")[0])
    return {
        "policy_version": policy.versions.get(status="active"),
        "reviewers": reviewers,
        "applications": applications,
        "key": key,
    }


def _run_archetypes(application) -> dict[str, str]:
    """Run one job of each archetype through the real pipeline in this process; their ids."""
    from audit import sealer
    from audit.ledger import Actor
    from routing.execute.run import job_run
    from routing.services.jobs import job_submit

    ids = {}
    for name, (markers, labels) in ARCHETYPE_PROMPTS.items():
        job, _ = job_submit(
            application=application,
            task_type="classification",
            messages=[
                {"role": "system", "content": "Route the support ticket to one queue."},
                {"role": "user", "content": f"{markers} Ticket 0: my card was charged twice for order 0."},
            ],
            labels=labels,
            metadata={"ticket": "T-0"},
            actor=Actor.application(application.pk),
        )
        job_run(job_id=str(job.pk), worker="bench-scale")
        ids[name] = str(job.pk)
    sealer.seal_pending()
    return ids


# --- templates ----------------------------------------------------------------------------------------


def _copy_text(value: Any) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    elif isinstance(value, datetime):
        value = value.isoformat()
    elif isinstance(value, Decimal | int | float | uuid.UUID):
        value = str(value)
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _columns(table: str) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND is_generated = 'NEVER' ORDER BY ordinal_position",
            [table],
        )
        return [row[0] for row in cursor.fetchall()]


def _rows(table: str, where: str, params: list) -> list[dict[str, Any]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY 1", params)  # noqa: S608 - constants
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class Template:
    """One archetype's rows, pre-escaped for COPY, with marks where a copy differs from the original."""

    def __init__(self, name: str, job_id: str) -> None:
        from audit.models import LedgerEvent

        self.name = name
        self.job = _rows("routing_job", "id = %s", [job_id])[0]
        self.steps = _rows("routing_step", "job_id = %s", [job_id])
        self.approvals = _rows("routing_approvalrequest", "job_id = %s", [job_id])
        created = self.job["created_at"]
        events = list(LedgerEvent.objects.filter(subject_job=job_id).order_by("xact_id", "id"))
        step_ids = {str(step["id"]): index for index, step in enumerate(self.steps)}
        approval_ids = {str(a["id"]) for a in self.approvals}
        application_id = str(self.job["application_id"])
        self.events: list[tuple[str, float, str]] = []  # (type, seconds after created, escaped canonical)
        for event in events:
            document = json.loads(event.canonical)
            seconds = (event.created_at - created).total_seconds()
            document["time"] = TIME_MARK.format(len(self.events))
            subject = document["subject"]
            for key, value in list(subject.items()):
                if key == "job":
                    subject[key] = JOB_MARK
                elif key == "application" and value == application_id:
                    subject[key] = APP_MARK
                elif key == "step" and value in step_ids:
                    subject[key] = STEP_MARK.format(step_ids[value])
                elif key == "approval" and value in approval_ids:
                    subject[key] = APPROVAL_MARK
            text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            text = text.replace(job_id, JOB_MARK)
            self.events.append((document["type"], seconds, _copy_text(text)))
        self.step_offsets = [(step["created_at"] - created).total_seconds() for step in self.steps]
        self.finish_offset = ((self.job["finished_at"] or created) - created).total_seconds()
        request = _json(self.job["request"])
        last = request["messages"][-1]
        last["content"] = last["content"].replace("Ticket 0", f"Ticket {TICKET_MARK}").replace(
            "order 0", f"order {TICKET_MARK}"
        )
        self.job["request"] = request
        # COPY text of every column a copy keeps as it is; None where the copy puts its own value.
        self.job_fixed = {
            column: None if column in JOB_VARYING else _copy_text(value) for column, value in self.job.items()
        }
        self.step_fixed = [
            {column: None if column in STEP_VARYING else _copy_text(value) for column, value in step.items()}
            for step in self.steps
        ]
        self.approval_fixed = (
            {
                column: None if column in APPROVAL_VARYING else _copy_text(value)
                for column, value in self.approvals[0].items()
            }
            if self.approvals
            else None
        )


def _json(value: Any) -> Any:
    """A fresh copy of a jsonb value (the cursor may hand it over as text or as Python objects)."""
    return json.loads(value if isinstance(value, str) else json.dumps(value))


_CHOICES: dict[tuple[str, int], list[int]] = {}


def _event_choice(template: Template, quota: int) -> list[int]:
    """Indexes of the template events a job keeps (in time order) when it may have `quota` of them."""
    key = (template.name, quota)
    if key not in _CHOICES:
        _CHOICES[key] = _event_choice_uncached(template, quota)
    return _CHOICES[key]


def _event_choice_uncached(template: Template, quota: int) -> list[int]:
    if quota >= len(template.events):
        return list(range(len(template.events)))
    ranked = sorted(
        range(len(template.events)),
        key=lambda i: EVENT_PRIORITY.index(template.events[i][0])
        if template.events[i][0] in EVENT_PRIORITY
        else len(EVENT_PRIORITY),
    )
    return sorted(ranked[:quota])


# --- the generator ------------------------------------------------------------------------------------

LOADED_TABLES = (
    "routing_job",
    "routing_step",
    "routing_approvalrequest",
    "routing_approvaldecision",
    "audit_ledgerevent",
)


class _Writer(threading.Thread):
    """One connection that COPYs the batches it is handed, in order, one transaction per batch."""

    def __init__(self, database_url: str, columns: dict[str, list[str]]) -> None:
        super().__init__(name="scale-bench-copy", daemon=True)
        self.database_url = database_url
        self.columns = columns
        self.batches: queue.Queue[dict[str, str] | None] = queue.Queue(maxsize=2)
        self.failure: BaseException | None = None

    def send(self, batch: dict[str, str]) -> None:
        if self.failure is not None:
            raise RuntimeError("COPY failed") from self.failure
        self.batches.put(batch)

    def finish(self) -> None:
        self.batches.put(None)
        self.join()
        if self.failure is not None:
            raise RuntimeError("COPY failed") from self.failure

    def run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.database_url) as conn:
                while (batch := self.batches.get()) is not None:
                    with conn.cursor() as cursor:
                        for table, text in batch.items():
                            columns = ", ".join(f'"{c}"' for c in self.columns[table])
                            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                                copy.write(text)
                    conn.commit()
        except BaseException as error:  # re-raised in the generator's thread
            self.failure = error
            while self.batches.get() is not None:  # keep draining: the generator must never block on us
                pass


class Loader:
    """Buffers COPY text per table and hands full batches to writer threads, each on its own connection,
    so that Python builds the next batch while Postgres loads the last one. The job, step and approval
    tables go through one writer, parents first in each transaction, so deferred foreign keys hold at each
    commit. Ledger events reference nothing and cost Postgres the most (nine JSON extractions a row for
    the generated columns), so they are spread over `event_writers` more."""

    FLUSH_BYTES = 8 * 1024 * 1024
    EVENTS = "audit_ledgerevent"

    def __init__(self, database_url: str, tables: dict[str, list[str]], event_writers: int = 2) -> None:
        self.columns = tables
        self.buffers: dict[str, list[str]] = {table: [] for table in tables}
        self.size = 0
        self.counts = dict.fromkeys(tables, 0)
        self.rows = _Writer(database_url, tables)
        self.events = [_Writer(database_url, tables) for _ in range(event_writers)]
        self.flushes = 0
        for writer in (self.rows, *self.events):
            writer.start()

    def add(self, table: str, line: str) -> None:
        self.buffers[table].append(line)
        self.size += len(line)
        self.counts[table] += 1
        if self.size >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        rows = {table: "".join(lines) for table, lines in self.buffers.items() if lines and table != self.EVENTS}
        if rows:
            self.rows.send(rows)
        if self.buffers[self.EVENTS]:
            self.events[self.flushes % len(self.events)].send({self.EVENTS: "".join(self.buffers[self.EVENTS])})
        self.buffers = {table: [] for table in self.columns}
        self.size = 0
        self.flushes += 1

    def close(self) -> None:
        self.flush()
        for writer in (self.rows, *self.events):
            writer.finish()


def _secondary_indexes(conn) -> list[tuple[str, str]]:
    """(name, definition) of the loaded tables' indexes that no constraint (primary key, unique, a foreign
    key's target) depends on."""
    return conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class t ON t.oid = x.indrelid WHERE t.relname = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) ORDER BY 1",
        [list(LOADED_TABLES)],
    ).fetchall()


def generate(
    *, database_url: str, templates: dict[str, Template], seeded: dict[str, Any], jobs: int, events: int, seed: int = 7
) -> dict[str, Any]:
    """Load the rows. The secondary indexes are dropped first and built again after the load (a sort per
    index instead of millions of random B-tree inserts: several times faster); the definitions are the
    migrations' own, read back from the catalogue. Built in one go they are denser than indexes grown row
    by row, which changes the page counts of long scans, not the plans or the pages read by a LIMIT 50."""
    import psycopg

    rng = random.Random(seed)
    tables = {table: _columns(table) for table in LOADED_TABLES}
    tables["audit_ledgerevent"] = ["id", "canonical"]
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=HISTORY_DAYS)
    spacing = HISTORY_DAYS * 86400 / jobs
    held_from = int(jobs * (1 - HELD_WINDOW_DAYS / HISTORY_DAYS))
    held_probability = HELD_SHARE * HISTORY_DAYS / HELD_WINDOW_DAYS
    applications = [str(a.pk) for a in seeded["applications"]]
    other_share = (1 - LARGEST_SHARE) / (len(applications) - 1)
    app_weights = [LARGEST_SHARE] + [other_share] * (len(applications) - 1)
    decider = seeded["reviewers"][1].pk
    mean_events = events / jobs
    outcomes = [(a, s, ap) for a, s, ap, _ in OUTCOMES]
    weights = [w for *_, w in OUTCOMES]
    step_id = approval_id = decision_id = event_id = 1_000_000
    made_events = 0
    held_ids: list[str] = []
    sample: list[str] = []
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        indexes = _secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.commit()
        loader = Loader(database_url, tables)
        job_cols = tables["routing_job"]
        step_cols = tables["routing_step"]
        approval_cols = tables["routing_approvalrequest"]
        decision_cols = tables["routing_approvaldecision"]
        for index in range(jobs):
            if index >= held_from and rng.random() < held_probability:
                archetype, status, approval_status = "held", "awaiting_approval", "pending"
            else:
                archetype, status, approval_status = rng.choices(outcomes, weights)[0]
            template = templates[archetype]
            job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            created = start + timedelta(seconds=index * spacing + rng.random() * spacing)
            created_text = created.isoformat()
            application = rng.choices(applications, app_weights)[0]
            row = dict(
                template.job_fixed,
                id=job_id,
                application_id=application,
                created_at=created_text,
                dispatched_at=created_text,
                started_at=(created + timedelta(milliseconds=5)).isoformat(),
                finished_at="\\N"
                if status == "awaiting_approval"
                else (created + timedelta(seconds=template.finish_offset)).isoformat(),
                status=status,
                claimed_by="bench-scale",
                lease_expires_at="\\N",
                request=template.job_fixed["request"].replace(TICKET_MARK, str(index)),
                metadata=f'{{"ticket":"T-{index}"}}',
            )
            if status not in ("completed", "awaiting_approval"):
                row["status_reason"] = f"bench: {status}"
            loader.add("routing_job", "\t".join(row[c] for c in job_cols) + "\n")
            step_ids = []
            for fixed, offset in zip(template.step_fixed, template.step_offsets, strict=True):
                step_id += 1
                step_ids.append(str(step_id))
                values = dict(
                    fixed, id=step_ids[-1], job_id=job_id, created_at=(created + timedelta(seconds=offset)).isoformat()
                )
                loader.add("routing_step", "\t".join(values[c] for c in step_cols) + "\n")
            this_approval = None
            if approval_status is not None and template.approval_fixed:
                approval_id += 1
                this_approval = str(approval_id)
                request_row = dict(
                    template.approval_fixed,
                    id=this_approval,
                    job_id=job_id,
                    status=approval_status,
                    created_at=(created + timedelta(seconds=template.finish_offset)).isoformat(),
                    expires_at=(created + timedelta(days=30)).isoformat(),
                    resolved_at="\\N"
                    if approval_status == "pending"
                    else (created + timedelta(hours=2)).isoformat(),
                )
                loader.add("routing_approvalrequest", "\t".join(request_row[c] for c in approval_cols) + "\n")
                if approval_status in ("approved", "rejected"):
                    decision_id += 1
                    kind = "approve" if approval_status == "approved" else "reject"
                    decision = {
                        "id": decision_id,
                        "kind": kind,
                        "reason": "" if kind == "approve" else "bench: not allowed",
                        "override": None,
                        "created_at": created + timedelta(hours=2),
                        "actor_id": decider,
                        "request_id": approval_id,
                    }
                    loader.add(
                        "routing_approvaldecision", "\t".join(_copy_text(decision[c]) for c in decision_cols) + "\n"
                    )
                if approval_status == "pending":
                    held_ids.append(job_id)
            quota = int((index + 1) * mean_events) - int(index * mean_events)
            for position in _event_choice(template, quota):
                _, offset, text = template.events[position]
                text = text.replace(JOB_MARK, job_id).replace(APP_MARK, application)
                text = text.replace(TIME_MARK.format(position), _event_time(created, offset))
                if this_approval:
                    text = text.replace(APPROVAL_MARK, this_approval)
                for number, step_value in enumerate(step_ids):
                    text = text.replace(STEP_MARK.format(number), step_value)
                event_id += 1
                made_events += 1
                loader.add("audit_ledgerevent", f"{event_id}\t{text}\n")
            if rng.random() < 200 / jobs:
                sample.append(job_id)
        loader.close()
        loaded = time.perf_counter() - started
        index_started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            conn.execute(definition)
        with conn.cursor() as cursor:
            for table in ("routing_step", "routing_approvalrequest", "routing_approvaldecision", "audit_ledgerevent"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
                )
        conn.commit()
        indexed = time.perf_counter() - index_started
        conn.autocommit = True
        analyze_started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        analyzed = time.perf_counter() - analyze_started
    return {
        "rows": loader.counts,
        "events": made_events,
        "held": len(held_ids),
        "load_s": round(loaded, 1),
        "index_s": round(indexed, 1),
        "indexes_rebuilt": len(indexes),
        "vacuum_analyze_s": round(analyzed, 1),
        "sample_jobs": sample,
    }


def _event_time(created: datetime, offset: float) -> str:
    return (created + timedelta(seconds=offset)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- measuring ----------------------------------------------------------------------------------------


class _FullCollections:
    """Counts the garbage collector's full (generation 2) collections and the CPU they take."""

    def __init__(self) -> None:
        self.count = 0
        self.cpu_ms = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.process_time()
        else:
            self.count += 1
            self.cpu_ms += (time.process_time() - self._started) * 1000


def _time_requests(
    client, paths: list[str], headers: dict[str, str]
) -> tuple[list[float], list[float], list[int], _FullCollections]:
    """Wall and CPU (this process: all of it is the server's here) milliseconds of each request. CPU time
    is what another engineer's load on the same cores inflates least."""
    import gc

    times, cpu, statuses = [], [], []
    collections = _FullCollections()
    gc.callbacks.append(collections)
    try:
        for path in paths:
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(path, **headers)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            statuses.append(response.status_code)
    finally:
        gc.callbacks.remove(collections)
    return times, cpu, statuses, collections


def _queries(client, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(path, **headers)
    return [{"ms": round(float(q["time"]) * 1000, 2), "sql": q["sql"]} for q in captured.captured_queries]


def _explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def measure_page(client, name: str, paths: list[str], headers: dict[str, str], warmup: int = 5) -> dict[str, Any]:
    _time_requests(client, paths[:warmup], headers)
    times, cpu, statuses, collections = _time_requests(client, paths, headers)
    queries = _queries(client, paths[len(paths) // 2], headers)
    p95 = percentile(times, 0.95)
    result: dict[str, Any] = {
        "page": name,
        "path": paths[0],
        "requests": len(times),
        "ok": sum(1 for s in statuses if s == 200),
        "statuses": sorted(set(statuses)),
        "p50_ms": round(percentile(times, 0.50), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(max(times), 1),
        "cpu_p50_ms": round(percentile(cpu, 0.50), 1),
        "cpu_p95_ms": round(percentile(cpu, 0.95), 1),
        "full_gc_collections": collections.count,
        "full_gc_cpu_ms": round(collections.cpu_ms, 1),
        "queries": len(queries),
        "query_ms": round(sum(q["ms"] for q in queries), 1),
        "slowest_queries": sorted(queries, key=lambda q: -q["ms"])[:3],
        "goal_ms": GOAL_MS,
        "meets_goal": p95 < GOAL_MS and all(s == 200 for s in statuses),
    }
    if not result["meets_goal"]:
        result["explain"] = [_explain(q["sql"]) for q in result["slowest_queries"] if q["sql"].startswith("SELECT")]
    return result


def measure(seeded: dict[str, Any], generated: dict[str, Any], requests: int) -> list[dict[str, Any]]:
    import gc

    from django.test import Client

    from routing.models import Job

    # What gunicorn loads (controlplane.wsgi), so that this process's garbage collector is set up like a
    # web worker's (what it freezes, after a collection of the generator's leftovers).
    gc.collect()
    import controlplane.wsgi  # noqa: F401

    reviewer = Client()
    reviewer.force_login(seeded["reviewers"][0])
    api = Client()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {seeded['key']}"}
    sample = generated["sample_jobs"] or list(Job.objects.values_list("pk", flat=True)[:200])
    details = [f"/jobs/{sample[i % len(sample)]}/" for i in range(requests)]
    held = Job.objects.filter(status="awaiting_approval").order_by("-created_at").values_list("pk", flat=True)[:1]
    pages = [
        measure_page(reviewer, "review queue", ["/review/"] * requests, {}),
        measure_page(reviewer, "job detail", details, {}),
        measure_page(api, "GET /api/v1/jobs", ["/api/v1/jobs"] * requests, bearer),
        # Beyond the goal list: what an application filtering its held jobs, and the UI job list, cost.
        measure_page(api, "GET /api/v1/jobs?status=awaiting_approval",
                     ["/api/v1/jobs?status=awaiting_approval"] * requests, bearer),
        measure_page(reviewer, "jobs list (UI)", ["/jobs/"] * requests, {}),
    ]
    if held:
        pages.append(measure_page(reviewer, "job detail (held)", [f"/jobs/{held[0]}/"] * requests, {}))
    return pages


def _reattach() -> tuple[dict[str, Any], dict[str, Any]]:
    """(seeded, generated) of a database kept by an earlier run: its reviewers and applications, a new key,
    a random sample of its jobs, its row counts."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import User
    from django.db import connection

    from audit.ledger import Actor
    from routing.models import Application, ApprovalRequest
    from routing.services.keys import api_key_create

    applications = list(Application.objects.filter(slug__startswith="scale-").order_by("slug"))
    _, key = api_key_create(application=applications[0], scopes=["jobs:read"], actor=Actor.system("bench"),
        created_by=get_user_model().objects.get_or_create(username="bench")[0])
    seeded = {
        "reviewers": [User.objects.get(username=name) for name in ("bench-reviewer", "bench-reviewer-2")],
        "applications": applications,
        "key": key,
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples::bigint FROM pg_class WHERE relname = ANY(%s)", [list(LOADED_TABLES)]
        )
        rows = dict(cursor.fetchall())
        cursor.execute(
            # ~300 rows from all over the table (LIMIT would otherwise keep the first, oldest, pages' rows).
            "SELECT id FROM routing_job TABLESAMPLE BERNOULLI (%s) LIMIT 200",
            [min(100.0, 30_000 / max(rows["routing_job"], 1))],
        )
        sample = [str(row[0]) for row in cursor.fetchall()]
    generated = {
        "reused": True,
        "rows": rows,
        "events": rows["audit_ledgerevent"],
        "held": ApprovalRequest.objects.filter(status="pending").count(),
        "sample_jobs": sample,
    }
    return seeded, generated


def run(
    quick: bool = False,
    jobs: int | None = None,
    events: int | None = None,
    keep: bool = False,
    database: str = DATABASE,
    reuse: bool = False,
) -> dict:
    """{"setup": {...}, "generated": {...}, "pages": [{page, p50_ms, p95_ms, queries, meets_goal, ...}]}.
    With `reuse`, measures the database an earlier run kept (`keep`) instead of building one."""
    keep = keep or reuse
    server_url, redis_url = server_urls()
    started = time.perf_counter()
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{database}")) if reuse else scratch_database(database)
    queue = f"arbiter-bench-scale-{uuid.uuid4().hex[:8]}"
    modelserver = None
    try:
        _setup_django(url, redis_url, queue)
        if reuse:
            seeded, generated = _reattach()
            jobs, events = generated["rows"]["routing_job"], generated["events"]
        else:
            jobs = jobs or (30_000 if quick else 1_000_000)
            events = events or (150_000 if quick else 5_000_000)
            modelserver, model_url = start_modelserver(0.0)
            seeded = _seed(model_url)
            ids = _run_archetypes(seeded["applications"][0])
            templates = {name: Template(name, job_id) for name, job_id in ids.items()}
            generated = generate(database_url=url, templates=templates, seeded=seeded, jobs=jobs, events=events)
        pages = measure(seeded, generated, REQUESTS_PER_PAGE[quick])
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            size = cursor.fetchone()[0]
    finally:
        if modelserver is not None:
            modelserver.terminate()
        from django.db import connections

        connections.close_all()
        from controlplane.redis_client import get_redis

        get_redis().delete(queue)
        if not keep:
            drop_database(database)
    generated.pop("sample_jobs", None)
    load = os.getloadavg()
    try:
        from bench import plots

        pictures = plots.scale_plot(pages, GOAL_MS, jobs)
    except Exception as error:  # a missing picture must not lose the figures
        pictures = [f"failed: {error}"]
    return {
        "setup": {
            "quick": quick,
            "database": database if keep else None,
            "reused": reuse,
            "jobs": jobs,
            "events_target": events,
            "database_size": size,
            "requests_per_page": REQUESTS_PER_PAGE[quick],
            "loadavg": [round(x, 2) for x in load],
            "elapsed_s": round(time.perf_counter() - started, 1),
        },
        "generated": generated,
        "pages": pages,
        "plots": pictures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (to EXPLAIN by hand)")
    parser.add_argument("--database", default=DATABASE, help=f"scratch database name (default {DATABASE})")
    parser.add_argument("--reuse", action="store_true", help="measure a database kept by an earlier --keep run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.quick, args.jobs, args.events, args.keep, args.database, args.reuse)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    setup, generated = result["setup"], result["generated"]
    print(
        f"{setup['jobs']:,} jobs, {generated['events']:,} events, {generated['held']:,} held; "
        f"loaded in {generated.get('load_s', '-')} s, indexed in {generated.get('index_s', '-')} s; "
        f"{setup['database_size']}; load {setup['loadavg']}"
    )
    columns = ("p50 ms", "p95 ms", "cpu p95", "full gc", "queries", "query ms")
    print(f"{'page':<44} " + " ".join(f"{name:>8}" for name in columns) + "  goal")
    for page in result["pages"]:
        verdict = "ok" if page["meets_goal"] else "MISSED"
        print(
            f"{page['page']:<44} {page['p50_ms']:>8} {page['p95_ms']:>8} {page['cpu_p95_ms']:>8} "
            f"{page['full_gc_collections']:>8} {page['queries']:>8} {page['query_ms']:>8}  {verdict}"
        )


if __name__ == "__main__":
    main()
