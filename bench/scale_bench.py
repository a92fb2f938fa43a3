"""At scale: server time of the review queue page, the job detail page and `GET /api/v1/jobs` over a scratch
database holding a million jobs (quick: 50,000) and five million ledger events (quick: 250,000).

The rows are not invented field by field: three real jobs (accepted on nano; escalated nano → mini; held
for approval) are run through the real pipeline against the local model server first, and their job,
step, approval and ledger rows are the templates that the generator copies with new ids and times, so
column sizes and event bodies are what the product writes. Everything is loaded with `COPY`. Ledger
events are inserted as canonical text only (Postgres generates the indexed columns); no seals — chain
verification is not what is measured here (the job page reads seals with a LEFT JOIN, which then finds
nothing; a sealed ledger adds one index probe per event shown).

Server time is measured in-process with Django's test `Client` (routing, middleware, view, queries,
template rendering, no socket), ~100 requests per page after a warm-up, as a logged-in reviewer for the
UI pages and with an application key (jobs:read) for the API. For each page the queries it runs are
captured once; a page over its goal gets `EXPLAIN (ANALYZE, BUFFERS)` of its slowest queries in the JSON.

    python bench/scale_bench.py [--quick] [--jobs N] [--events N] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import drop_database, percentile, scratch_database, server_urls, start_modelserver

DATABASE = "arbiter_bench_scale"
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


# --- set-up -------------------------------------------------------------------------------------------


def _setup_django(database_url: str, redis_url: str, queue: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ARBITER_QUEUE=queue,
        ARBITER_RATE_LIMIT_PER_MINUTE="0",
        DJANGO_SETTINGS_MODULE="controlplane.settings",
    )
    import django

    django.setup()


def _seed(model_url: str) -> dict[str, Any]:
    from django.conf import settings
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
    _, key = api_key_create(application=applications[0], scopes=["jobs:read"], actor=Actor.system("bench"))
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
    from routing.pipeline.execute import job_run
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


class Loader:
    """Buffers COPY text per table and flushes it in large writes, one transaction per flush."""

    FLUSH_BYTES = 8 * 1024 * 1024

    def __init__(self, conn, tables: dict[str, list[str]]) -> None:
        self.conn = conn
        self.columns = tables
        self.buffers: dict[str, list[str]] = {table: [] for table in tables}
        self.sizes = dict.fromkeys(tables, 0)
        self.counts = dict.fromkeys(tables, 0)

    def add(self, table: str, line: str) -> None:
        self.buffers[table].append(line)
        self.sizes[table] += len(line)
        self.counts[table] += 1
        if self.sizes[table] >= self.FLUSH_BYTES:
            self.flush_all()  # every table, parents first, so deferred foreign keys hold at each commit

    def flush_all(self) -> None:
        with self.conn.cursor() as cursor:
            for table, lines in self.buffers.items():
                if not lines:
                    continue
                columns = ", ".join(f'"{c}"' for c in self.columns[table])
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    copy.write("".join(lines))
                self.buffers[table] = []
                self.sizes[table] = 0
        self.conn.commit()


def generate(
    *, database_url: str, templates: dict[str, Template], seeded: dict[str, Any], jobs: int, events: int, seed: int = 7
) -> dict[str, Any]:
    import psycopg

    rng = random.Random(seed)
    tables = {
        "routing_job": _columns("routing_job"),
        "routing_step": _columns("routing_step"),
        "routing_approvalrequest": _columns("routing_approvalrequest"),
        "routing_approvaldecision": _columns("routing_approvaldecision"),
        "audit_ledgerevent": ["id", "canonical"],
    }
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=HISTORY_DAYS)
    spacing = HISTORY_DAYS * 86400 / jobs
    held_from = int(jobs * (1 - HELD_WINDOW_DAYS / HISTORY_DAYS))
    held_probability = HELD_SHARE * HISTORY_DAYS / HELD_WINDOW_DAYS
    applications = [a.pk for a in seeded["applications"]]
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
        loader = Loader(conn, tables)
        job_cols = tables["routing_job"]
        step_cols = tables["routing_step"]
        approval_cols = tables["routing_approvalrequest"]
        for index in range(jobs):
            if index >= held_from and rng.random() < held_probability:
                archetype, status, approval_status = "held", "awaiting_approval", "pending"
            else:
                archetype, status, approval_status = rng.choices(outcomes, weights)[0]
            template = templates[archetype]
            job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            created = start + timedelta(seconds=index * spacing + rng.random() * spacing)
            application = rng.choices(applications, app_weights)[0]
            row = dict(template.job)
            row.update(
                id=job_id,
                application_id=application,
                created_at=created,
                dispatched_at=created,
                started_at=created + timedelta(milliseconds=5),
                finished_at=None
                if status == "awaiting_approval"
                else created + timedelta(seconds=template.finish_offset),
                status=status,
                status_reason=row["status_reason"]
                if status in ("completed", "awaiting_approval")
                else f"bench: {status}",
                claimed_by="bench-scale",
                lease_expires_at=None,
            )
            request = _json(row["request"])
            request["messages"][-1]["content"] = request["messages"][-1]["content"].replace(
                "Ticket 0", f"Ticket {index}"
            ).replace("order 0", f"order {index}")
            row["request"] = request
            row["metadata"] = {"ticket": f"T-{index}"}
            loader.add("routing_job", "\t".join(_copy_text(row[c]) for c in job_cols) + "\n")
            step_ids = []
            for step, offset in zip(template.steps, template.step_offsets, strict=True):
                step_id += 1
                step_ids.append(str(step_id))
                values = dict(step, id=step_id, job_id=job_id, created_at=created + timedelta(seconds=offset))
                loader.add("routing_step", "\t".join(_copy_text(values[c]) for c in step_cols) + "\n")
            this_approval = None
            if approval_status is not None and template.approvals:
                approval_id += 1
                this_approval = str(approval_id)
                request_row = dict(
                    template.approvals[0],
                    id=approval_id,
                    job_id=job_id,
                    status=approval_status,
                    created_at=created + timedelta(seconds=template.finish_offset),
                    expires_at=created + timedelta(days=30),
                    resolved_at=None if approval_status == "pending" else created + timedelta(hours=2),
                )
                loader.add(
                    "routing_approvalrequest", "\t".join(_copy_text(request_row[c]) for c in approval_cols) + "\n"
                )
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
                        "routing_approvaldecision",
                        "\t".join(_copy_text(decision[c]) for c in tables["routing_approvaldecision"]) + "\n",
                    )
                if approval_status == "pending":
                    held_ids.append(job_id)
            quota = int((index + 1) * mean_events) - int(index * mean_events)
            for position in _event_choice(template, quota):
                _, offset, text = template.events[position]
                text = text.replace(JOB_MARK, job_id).replace(APP_MARK, str(application))
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
        loader.flush_all()
        loaded = time.perf_counter() - started
        with conn.cursor() as cursor:
            for table in ("routing_step", "routing_approvalrequest", "routing_approvaldecision", "audit_ledgerevent"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
                )
        conn.commit()
        conn.autocommit = True
        analyze_started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        analyzed = time.perf_counter() - analyze_started
    return {
        "rows": loader.counts,
        "events": made_events,
        "held": len(held_ids),
        "load_s": round(loaded, 1),
        "vacuum_analyze_s": round(analyzed, 1),
        "sample_jobs": sample,
    }


def _event_time(created: datetime, offset: float) -> str:
    return (created + timedelta(seconds=offset)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- measuring ----------------------------------------------------------------------------------------


def _time_requests(client, paths: list[str], headers: dict[str, str]) -> tuple[list[float], list[int]]:
    times, statuses = [], []
    for path in paths:
        started = time.perf_counter()
        response = client.get(path, **headers)
        times.append((time.perf_counter() - started) * 1000)
        statuses.append(response.status_code)
    return times, statuses


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
    times, statuses = _time_requests(client, paths, headers)
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
    from django.test import Client

    from routing.models import Job

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


def run(quick: bool = False, jobs: int | None = None, events: int | None = None, keep: bool = False) -> dict:
    """{"setup": {...}, "generated": {...}, "pages": [{page, p50_ms, p95_ms, queries, meets_goal, ...}]}."""
    jobs = jobs or (50_000 if quick else 1_000_000)
    events = events or (250_000 if quick else 5_000_000)
    _, redis_url = server_urls()
    started = time.perf_counter()
    url = scratch_database(DATABASE)
    queue = f"arbiter-bench-scale-{uuid.uuid4().hex[:8]}"
    modelserver, model_url = start_modelserver(0.0)
    try:
        _setup_django(url, redis_url, queue)
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
        modelserver.terminate()
        from django.db import connections

        connections.close_all()
        from routing.redis_client import get_redis

        get_redis().delete(queue)
        if not keep:
            drop_database(DATABASE)
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
    parser.add_argument("--keep", action="store_true", help=f"keep the database {DATABASE} afterwards")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.quick, args.jobs, args.events, args.keep)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    setup, generated = result["setup"], result["generated"]
    print(
        f"{setup['jobs']:,} jobs, {generated['events']:,} events, {generated['held']:,} held; "
        f"loaded in {generated['load_s']} s; {setup['database_size']}; load {setup['loadavg']}"
    )
    print(f"{'page':<44} {'p50 ms':>7} {'p95 ms':>7} {'queries':>7} {'query ms':>8}  goal")
    for page in result["pages"]:
        verdict = "ok" if page["meets_goal"] else "MISSED"
        print(
            f"{page['page']:<44} {page['p50_ms']:>7} {page['p95_ms']:>7} {page['queries']:>7} "
            f"{page['query_ms']:>8}  {verdict}"
        )


if __name__ == "__main__":
    main()
