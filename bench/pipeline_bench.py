"""Jobs completed per second end to end (submit → completed) through real Celery workers, a real broker
and Postgres with the ledger on, against the local model server at zero latency; and queue wait.

    python bench/pipeline_bench.py [--jobs 400] [--workers 1,2] [--json]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def _start_workers(count: int, concurrency: int, env: dict[str, str]) -> list[subprocess.Popen]:
    from controlplane.celery import worker_argv

    argv = worker_argv(queue=env["ARBITER_QUEUE"], concurrency=concurrency, name="bench")
    return [subprocess.Popen(argv, cwd=BASE_DIR, env=env, start_new_session=True) for _ in range(count)]


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def run_once(application, jobs: int, workers: int, env: dict[str, str], concurrency: int = 1) -> dict:
    from audit.ledger import Actor
    from routing.models import Job
    from routing.services.jobs import job_submit

    marker = uuid.uuid4().hex[:8]
    processes = _start_workers(workers, concurrency, env)
    try:
        time.sleep(4)  # workers connect before the clock starts
        started = time.perf_counter()
        ids = []
        for index in range(jobs):
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
            ids.append(job.pk)
        submitted = time.perf_counter() - started
        done = wait_until(
            lambda: Job.objects.filter(pk__in=ids, status="completed").count() == len(ids),
            timeout=600,
            interval=0.2,
        )
        elapsed = time.perf_counter() - started
        rows = list(Job.objects.filter(pk__in=ids).values_list("created_at", "started_at", "finished_at"))
    finally:
        _stop(processes)
    waits = [(s - c).total_seconds() * 1000 for c, s, _ in rows if s]
    return {
        "workers": workers,
        "concurrency": concurrency,
        "jobs": jobs,
        "all_completed": done,
        "submit_s": round(submitted, 2),
        "elapsed_s": round(elapsed, 2),
        "jobs_per_s": round(jobs / elapsed, 1),
        "queue_wait_p50_ms": round(percentile(waits, 0.5), 1),
        "queue_wait_p99_ms": round(percentile(waits, 0.99), 1),
    }


def run(
    quick: bool = False, jobs: int | None = None, worker_counts: tuple[int, ...] = (1, 2), concurrency: int = 4
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
        results = [run_once(application, jobs, count, env, concurrency) for count in worker_counts]
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
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.quick, args.jobs, tuple(int(n) for n in args.workers.split(",")), args.concurrency)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'workers':>7} {'conc.':>5} {'jobs':>5} {'jobs/s':>7} {'wait p50 ms':>12} {'wait p99 ms':>12}")
    for row in result["pipeline"]:
        print(
            f"{row['workers']:>7} {row['concurrency']:>5} {row['jobs']:>5} {row['jobs_per_s']:>7} "
            f"{row['queue_wait_p50_ms']:>12} "
            f"{row['queue_wait_p99_ms']:>12}"
        )


if __name__ == "__main__":
    main()
