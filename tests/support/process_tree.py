"""Find the processes of a running `make run` by walking the process tree under the launcher's PID in
/proc — never by a global name pattern, which could hit another checkout's processes.

    tree = ProcessTree(launcher_pid)
    tree.find("worker-main")   # -> [Proc(pid=..., ppid=..., argv=[...])]

Kinds: supervisord, web-master, web-worker, worker-main, worker-child, beat, modelserver, postgres
(the postmaster), redis. For the chaos suite as much as for tests/controlplane/test_supervision.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KINDS = (
    "supervisord",
    "web-master",
    "web-worker",
    "worker-main",
    "worker-child",
    "beat",
    "modelserver",
    "postgres",
    "redis",
)


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    argv: list[str]

    @property
    def names(self) -> list[str]:
        return [Path(arg).name for arg in self.argv]


def _read(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name in field 2 may hold spaces and parentheses: the fields after it follow the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited already
        return None
    return Proc(pid=pid, ppid=int(fields[1]), argv=[arg for arg in cmdline.decode(errors="replace").split("\0") if arg])


def alive(pid: int) -> bool:
    """Is `pid` a live process (not gone, not a zombie)?"""
    return _read(pid) is not None


def _program_kind(proc: Proc) -> str | None:
    """What a child of supervisord is, from its command line."""
    names = proc.names
    if "gunicorn" in names:
        return "web-master"
    if "celery" in names:
        return "worker-main" if "worker" in proc.argv else "beat" if "beat" in proc.argv else None
    if "modelserver" in proc.argv:
        return "modelserver"
    if names and names[0] == "postgres":
        return "postgres"
    # redis-server rewrites its command line to one string: "/path/redis-server unixsocket:/path".
    if proc.argv and Path(proc.argv[0].split(" ")[0]).name == "redis-server":
        return "redis"
    return None


class ProcessTree:
    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid

    def descendants(self) -> list[Proc]:
        procs = [proc for pid in os.listdir("/proc") if pid.isdigit() and (proc := _read(int(pid)))]
        children: dict[int, list[Proc]] = {}
        for proc in procs:
            children.setdefault(proc.ppid, []).append(proc)
        found, frontier = [], [self.root_pid]
        while frontier:
            for child in children.get(frontier.pop(), []):
                found.append(child)
                frontier.append(child.pid)
        return found

    def kinds(self) -> dict[str, list[Proc]]:
        """Every process of a known kind under the root, by kind."""
        procs = self.descendants()
        by_kind: dict[str, list[Proc]] = {kind: [] for kind in KINDS}
        supervisords = [proc for proc in procs if "supervisord" in proc.names and proc.ppid == self.root_pid]
        by_kind["supervisord"] = supervisords
        programs = [proc for proc in procs if proc.ppid in {s.pid for s in supervisords}]
        for proc in programs:
            kind = _program_kind(proc)
            if kind:
                by_kind[kind].append(proc)
        for parent_kind, child_kind in (("web-master", "web-worker"), ("worker-main", "worker-child")):
            parents = {proc.pid for proc in by_kind[parent_kind]}
            by_kind[child_kind] = [proc for proc in procs if proc.ppid in parents]
        return by_kind

    def find(self, kind: str) -> list[Proc]:
        if kind not in KINDS:
            raise ValueError(f"unknown process kind {kind!r}; one of {', '.join(KINDS)}")
        return self.kinds()[kind]
