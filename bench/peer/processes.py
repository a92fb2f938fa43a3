"""The processes of a run: core pinning, stopping a process group, waiting for HTTP, CPU metering."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable


def split_cores() -> tuple[set[int], set[int]] | None:
    """(load generator + model server, system under test), or None when there is only one core."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return {available[0]}, {available[1]}


def pin_running(pid: int, cores: set[int]) -> None:
    """Pin every thread of a running process (affinity is per thread; new threads inherit their creator's)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cores)
        except ProcessLookupError:
            continue


def pinned(cores: set[int] | None) -> Callable[[], None] | None:
    if not cores:
        return None
    return lambda: os.sched_setaffinity(0, cores)


def stop_process(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def wait_http(url: str, accept: set[int], timeout: float) -> bool:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            connection.request("GET", parts.path)
            status = connection.getresponse().status
            connection.close()
            if status in accept:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


class CpuMeter:
    """CPU seconds (user + system) of process trees, children included, and of Postgres backends of one
    database, between two readings. A process that exits between readings loses its share; none of the
    measured ones is expected to."""

    def __init__(self, roots: list[int], database: str | None = None) -> None:
        self.roots = roots
        self.database = database

    def _processes(self) -> tuple[list, list]:
        import psutil

        own = []
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                own += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        backends = []
        if self.database:
            for process in psutil.process_iter(["cmdline"]):
                command = " ".join(process.info["cmdline"] or [])
                if command.startswith("postgres:") and f" {self.database} " in command:
                    backends.append(process)
        return own, backends

    def read(self) -> dict[str, dict[int, float]]:
        import psutil

        own, backends = self._processes()
        reading: dict[str, dict[int, float]] = {"own": {}, "db": {}}
        for group, processes in (("own", own), ("db", backends)):
            for process in processes:
                try:
                    times = process.cpu_times()
                    reading[group][process.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    continue
        return reading

    @staticmethod
    def spent(before: dict, after: dict) -> tuple[float, float]:
        """(own, database) CPU seconds between two readings."""
        return tuple(
            sum(value - before[group].get(pid, 0.0) for pid, value in after[group].items()) for group in ("own", "db")
        )
