"""Jobs completed per second end to end (submit → completed) through real Celery workers, a real broker
and Postgres with the ledger on, against the local model server at zero latency; and queue wait.

    python bench/pipeline_bench.py [--jobs 400] [--workers 1,2] [--submitters 4] [--json]

Jobs are submitted by `--submitters` threads at once (each its own database connection, as an API server's
threads would be): one serial submitter, a commit round trip at a time, capped the figure at its own rate
(with 1 worker the submit took most of the elapsed time), and more worker processes only slowed it further.
The clock starts once every worker answers a control ping (a fixed sleep was too short on a loaded machine,
and the figure then counted a worker's start-up). Two rates per row: `jobs_per_s`, end to end (the first
submit to the last completion, submission inside the clock), and `drain_per_s`, the workers' own rate (the
first claim to the last completion, from the rows). Per job, between the same two moments: `worker_cpu_ms`,
the CPU of the worker processes (main and pool children), and `postgres_cpu_ms`, of the bench database's
backends (the submitters' and the workers').
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peer.processes import CpuMeter
from bench.support import (
    BASE_DIR,
    checkout_database,
    drop_database,
    percentile,
    scratch_database,
    server_urls,
    start_modelserver,
    wait_until,
)

DATABASE = checkout_database("arbiter_bench_pipeline")


def _setup_django(database_url: str, redis_url: str, queue: str) -> None:
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, ARBITER_QUEUE=queue)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()


def _seed(model_url: str):
    from django.conf import settings

    settings.ARBITER_MODELSERVER_URL = model_url
    from routing.demo.seed import seed_catalog, seed_policy
    from routing.models import Application

    seed_catalog()
    seed_policy()
    return Application.objects.get_or_create(slug="bench", defaults={"name": "bench"})[0]


def _start_workers(count: int, concurrency: int, env: dict[str, str], name: str) -> list[subprocess.Popen]:
    from controlplane.celery import worker_argv

    argv = worker_argv(queue=env["ARBITER_QUEUE"], concurrency=concurrency, name=name)
    return [subprocess.Popen(argv, cwd=BASE_DIR, env=env, start_new_session=True) for _ in range(count)]


def _workers_ready(count: int, name: str) -> bool:
    """Every one of the `count` workers called `name`-… answers a control ping (it consumes by then)."""
    from controlplane.celery import app

    replies = app.control.ping(timeout=1.0)
    return sum(1 for reply in replies for hostname in reply if hostname.startswith(f"{name}-")) >= count


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def run_once(
    application, jobs: int, workers: int, env: dict[str, str], concurrency: int = 1, submitters: int = 4
) -> dict:
    from django.db import connection

    from audit.ledger import Actor
    from routing.models import Job
    from routing.services.jobs import job_submit

    marker = uuid.uuid4().hex[:8]

    def submit(index: int) -> str:
        job, _ = job_submit(
            application=application,
            task_type="classification",
            messages=[
                {
                    "role": "user",
                    "content": f"[task:classification] [confidence:nano=0.95] {marker} {index}",
                }
            ],
            actor=Actor.application(application.pk),
        )
        return job.pk

    def submit_share(share: range) -> list[str]:
        try:
            return [submit(index) for index in share]
        finally:
            connection.close()  # this thread's own

    name = f"bench{marker}"
    processes = _start_workers(workers, concurrency, env, name)
    try:
        if not wait_until(lambda: _workers_ready(workers, name), timeout=120, interval=0.5):
            raise RuntimeError(f"the {workers} worker(s) did not answer a ping within 120 s")
        meter = CpuMeter([process.pid for process in processes], database=connection.settings_dict["NAME"])
        cpu_before = meter.read()
        started = time.perf_counter()
        if submitters > 1:
            with ThreadPoolExecutor(submitters) as pool:
                shares = pool.map(submit_share, [range(n, jobs, submitters) for n in range(submitters)])
                ids = [job_id for share in shares for job_id in share]
        else:
            ids = [submit(index) for index in range(jobs)]
        submitted = time.perf_counter() - started
        done = wait_until(
            lambda: Job.objects.filter(pk__in=ids, status="completed").count() == len(ids),
            timeout=600,
            interval=0.2,
        )
        elapsed = time.perf_counter() - started
        worker_cpu_s, postgres_cpu_s = CpuMeter.spent(cpu_before, meter.read())
        rows = list(Job.objects.filter(pk__in=ids).values_list("created_at", "started_at", "finished_at"))
    finally:
        _stop(processes)
    waits = [(s - c).total_seconds() * 1000 for c, s, _ in rows if s]
    first_claim = min(s for _, s, _ in rows if s)
    last_done = max(f for _, _, f in rows if f)
    return {
        "workers": workers,
        "concurrency": concurrency,
        "submitters": submitters,
        "jobs": jobs,
        "all_completed": done,
        "submit_s": round(submitted, 2),
        "elapsed_s": round(elapsed, 2),
        "jobs_per_s": round(jobs / elapsed, 1),
        "drain_per_s": round(jobs / (last_done - first_claim).total_seconds(), 1),
        "worker_cpu_ms": round(worker_cpu_s * 1000 / jobs, 1),
        "postgres_cpu_ms": round(postgres_cpu_s * 1000 / jobs, 1),
        "queue_wait_p50_ms": round(percentile(waits, 0.5), 1),
        "queue_wait_p99_ms": round(percentile(waits, 0.99), 1),
    }


def run(
    quick: bool = False,
    jobs: int | None = None,
    worker_counts: tuple[int, ...] = (1, 2),
    concurrency: int = 4,
    submitters: int = 4,
) -> dict:
    """Each worker count is measured with one process per worker running `concurrency` prefork children
    (the work is mostly waiting on Postgres commits and HTTP, so one child per core leaves cores idle)."""
    jobs = jobs or (100 if quick else 400)
    database_url = scratch_database(DATABASE)
    _, redis_url = server_urls()
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    modelserver, model_url = start_modelserver(0.0)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ARBITER_QUEUE": queue,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    try:
        _setup_django(database_url, redis_url, queue)
        application = _seed(model_url)
        results = [run_once(application, jobs, count, env, concurrency, submitters) for count in worker_counts]
    finally:
        modelserver.terminate()
        from django.db import connections

        connections.close_all()
        drop_database(DATABASE)
    return {"pipeline": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--submitters", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workers = tuple(int(n) for n in args.workers.split(","))
    result = run(args.quick, args.jobs, workers, args.concurrency, args.submitters)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{'workers':>7} {'conc.':>5} {'subm.':>5} {'jobs':>5} {'submit s':>8} {'jobs/s':>7} {'drain/s':>7} "
        f"{'cpu ms/job':>10} {'pg ms/job':>9} {'wait p50 ms':>12} {'wait p99 ms':>12}"
    )
    for row in result["pipeline"]:
        print(
            f"{row['workers']:>7} {row['concurrency']:>5} {row['submitters']:>5} {row['jobs']:>5} "
            f"{row['submit_s']:>8} {row['jobs_per_s']:>7} {row['drain_per_s']:>7} "
            f"{row['worker_cpu_ms']:>10} {row['postgres_cpu_ms']:>9} "
            f"{row['queue_wait_p50_ms']:>12} {row['queue_wait_p99_ms']:>12}"
        )


if __name__ == "__main__":
    main()
