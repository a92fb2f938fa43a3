"""A lever on and off in one process (issue #15): requests through Django's test client against the peer
bench's seeded database and the local model server, in alternating blocks (10 + 10 blocks of 40), the
lever's function replaced by a no-op when off. Per mode: the wall p50 of each block, CPU per request and
the time spent in COMMIT per request. Alternating blocks in one process is what survives a loaded machine.

    .venv/bin/python -m bench.peer.ab routing.execute.run:claim_flushed_by_next_commit
    .venv/bin/python -m bench.peer.ab MODULE:NAME [--path /api/v1/jobs] [--off OTHER_MODULE:OTHER_NAME]

With `--off`, the lever is replaced by that function instead of a no-op (an old implementation against a new).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import time

from bench.peer.load import ONE_HOP, PROMPT
from bench.support import start_modelserver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lever", help="MODULE:NAME, the function that is the lever (a no-op when off)")
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--off", default="", help="MODULE:NAME of what replaces the lever when off (default a no-op)")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=40)
    options = parser.parse_args()
    server, model_url = start_modelserver(0.0)
    try:
        from bench.peer.arbiter import arbiter_setup

        _, keys, _ = arbiter_setup(model_url)
        from django.conf import settings
        from django.db import connection
        from django.test import Client

        settings.ARBITER_RATE_LIMIT_PER_MINUTE = 0  # as the peer bench's gunicorn
        module_name, _, name = options.lever.partition(":")
        module = importlib.import_module(module_name)
        lever = getattr(module, name)
        off_module, _, off_name = options.off.partition(":")
        off = getattr(importlib.import_module(off_module), off_name) if options.off else (lambda *a, **k: None)
        client = Client(HTTP_AUTHORIZATION=f"Bearer {keys['arbiter']}", HTTP_X_ARBITER_TASK_TYPE="classification")
        commits: list[float] = []
        commit = connection.commit

        def timed_commit() -> None:
            started = time.perf_counter()
            try:
                commit()
            finally:
                commits.append((time.perf_counter() - started) * 1000)

        connection.commit = timed_commit
        offset = int(time.time())

        def run(requests: int) -> tuple[float, float, float]:
            nonlocal offset
            walls = []
            commits.clear()
            cpu = time.process_time()
            for _ in range(requests):
                offset += 1
                messages = [{"role": "user", "content": f"{ONE_HOP} {PROMPT.format(n=offset)}"}]
                body = (
                    {"model": "auto", "messages": messages}
                    if options.path.endswith("completions")
                    else {"task_type": "classification", "messages": messages}
                )
                started = time.perf_counter()
                answer = client.post(options.path, json.dumps(body), content_type="application/json")
                walls.append((time.perf_counter() - started) * 1000)
                if answer.status_code not in (200, 201):
                    raise RuntimeError(f"HTTP {answer.status_code}: {answer.content[:300]!r}")
            cpu_ms = (time.process_time() - cpu) * 1000 / requests
            return statistics.median(walls), cpu_ms, sum(commits) / requests

        run(20)  # warm-up
        results: dict[str, list[tuple[float, float, float]]] = {"on": [], "off": []}
        for block in range(options.blocks):
            for mode in ("on", "off") if block % 2 == 0 else ("off", "on"):
                setattr(module, name, lever if mode == "on" else off)
                results[mode].append(run(options.per_block))
        setattr(module, name, lever)
        for mode, rows in results.items():
            walls, cpus, in_commit = zip(*rows, strict=True)
            print(
                f"{mode}: wall p50 per block {[round(w, 1) for w in walls]}, median {statistics.median(walls):.2f} ms"
                f" | CPU {statistics.median(cpus):.2f} ms/request | in COMMIT {statistics.median(in_commit):.2f}"
                " ms/request"
            )
        print("load average at the end", os.getloadavg())
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
