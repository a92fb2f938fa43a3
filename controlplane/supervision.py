"""`make run`'s supervisor: supervisord, run in the foreground under the launcher, keeps every process
of the product up — the embedded PostgreSQL and Redis, the web server, the Celery worker and beat and
the model server — and restarts whichever dies.

Why supervisord rather than a restart loop of our own: it already has what a hand-written loop would
have to grow and get right — restart on any exit, a backoff for a process that keeps dying at start
(`startsecs`/`startretries`, then a FATAL state and a clear "gave up" line instead of a busy loop),
stops in reverse start order with a grace period and then SIGKILL for the whole process group, log
files with rotation, and `supervisorctl` for an operator (`status`, `restart worker`, `tail -f web`).

supervisord has no prefixed console output, so each program logs to `<data dir>/logs/<name>.log`
and controlplane.console prints new lines with honcho's `name | line` prefix, as `make run` always has.
"""

from __future__ import annotations

import configparser
import contextlib
import ctypes
import io
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from controlplane import embedded

RPC_TIMEOUT_S = 30
POLL_S = 0.2
# A program must stay up this long to count as started; one that dies sooner is retried after 1, 2, 3 …
# seconds, and after START_RETRIES such failures supervisord gives up on it (state FATAL).
START_S = 5
START_RETRIES = 5


class SupervisorError(RuntimeError):
    """supervisord could not be started or reached; the message is one line for the operator."""


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    # Started in ascending order, stopped in descending order: the services first and last.
    priority: int
    autostart: bool = False
    stop_signal: str = "TERM"
    stop_wait_s: int = 15
    user: str | None = None


def procfile_program(name: str, line: str, priority: int) -> Program:
    """A Procfile line (shell syntax: `${PORT:-8000}`) run by `sh`, which `exec`s it: the supervised
    PID is the program's own, so a signal from supervisord reaches it and its death is seen at once."""
    return Program(name=name, command=["/bin/sh", "-c", f"exec {line}"], priority=priority)


def become_subreaper() -> None:
    """Linux: orphans under us (a gunicorn worker whose master died, or supervisord's programs if it dies
    itself) are re-parented to us rather than to init, so we can stop them; `reap_orphans` collects them."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # 36 = PR_SET_CHILD_SUBREAPER


def _exited_children() -> list[int]:
    me = str(os.getpid())
    exited = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            if ppid == me and state == "Z":
                exited.append(int(entry))
    return exited


def reap_orphans(keep: int | None) -> None:
    """Collect adopted orphans that exited; never `keep` (supervisord: its Popen reads its status)."""
    if sys.platform != "linux":
        return
    for pid in _exited_children():
        if pid != keep:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _die_with_parent() -> None:
    # Linux: if the launcher itself is killed, supervisord gets SIGTERM and stops everything cleanly
    # instead of running on with nobody to stop it.
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class Supervisor:
    def __init__(self, programs: Iterable[Program], *, data_dir: Path, env: dict[str, str], cwd: Path) -> None:
        self.programs = sorted(programs, key=lambda program: (program.priority, program.name))
        self.log_dir = data_dir / "logs"
        self.state_dir = data_dir / "supervisor"
        self.config_file = self.state_dir / "supervisord.conf"
        self.socket = embedded._short_dir(self.state_dir, "supervisor.sock") / "supervisor.sock"
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        # The control socket is mode 0700 already; a per-run password as well keeps supervisord from
        # warning about an unauthenticated server on every start. supervisorctl reads it from the config.
        self.password = secrets.token_urlsafe(24)

    # Configuration ---------------------------------------------------------------------------

    def config_text(self) -> str:
        config = configparser.RawConfigParser()
        config["supervisord"] = {
            "nodaemon": "true",
            "logfile": str(self.log_dir / "supervisord.log"),
            "logfile_maxbytes": "5MB",
            "pidfile": str(self.state_dir / "supervisord.pid"),
            "childlogdir": str(self.log_dir),
            "loglevel": "info",
        }
        if os.geteuid() == 0:
            config["supervisord"]["user"] = "root"  # said, so supervisord does not warn about it
        credentials = {"username": "arbiter", "password": self.password}
        config["unix_http_server"] = {"file": str(self.socket), "chmod": "0700", **credentials}
        config["rpcinterface:supervisor"] = {
            "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
        }
        config["supervisorctl"] = {"serverurl": f"unix://{self.socket}", **credentials}
        for program in self.programs:
            section = {
                # supervisord splits `command` like a POSIX shell and expands %(...)s in every value.
                "command": shlex.join(program.command).replace("%", "%%"),
                "directory": str(self.cwd),
                "priority": str(program.priority),
                "autostart": str(program.autostart).lower(),
                "autorestart": "true",
                "startsecs": str(START_S),
                "startretries": str(START_RETRIES),
                "stopsignal": program.stop_signal,
                "stopwaitsecs": str(program.stop_wait_s),
                # A worker's pool children and gunicorn's workers go with their parent on a stop.
                "stopasgroup": "true",
                "killasgroup": "true",
                "redirect_stderr": "true",
                "stdout_logfile": str(self.log_dir / f"{program.name}.log"),
                "stdout_logfile_maxbytes": "10MB",
                "stdout_logfile_backups": "3",
            }
            if program.user:
                section["user"] = program.user
            config[f"program:{program.name}"] = section
        text = io.StringIO()
        config.write(text)
        return text.getvalue()

    # Running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start supervisord (the `autostart` programs with it) and wait until it answers."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.touch(mode=0o600)
        self.config_file.chmod(0o600)
        self.config_file.write_text(self.config_text())
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "supervisord"), "--configuration", str(self.config_file)],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches the launcher only, which then stops
            # the programs in order (the services last) rather than all of them at once.
            start_new_session=True,
            preexec_fn=_die_with_parent,  # before any thread of ours starts: fork-safe
        )
        deadline = time.monotonic() + RPC_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                raise SupervisorError(f"supervisord exited at start: {output.strip()[-500:]}")
            try:
                state = cast(dict[str, Any], self.rpc().supervisor.getState())
                if state["statename"] == "RUNNING":
                    return
            except (OSError, xmlrpc.client.Fault):
                pass
            time.sleep(POLL_S)
        raise SupervisorError(f"supervisord did not answer on {self.socket} within {RPC_TIMEOUT_S} s")

    def rpc(self) -> xmlrpc.client.ServerProxy:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport("arbiter", self.password, serverurl=f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://supervisord", transport=transport)

    def start_programs(self, names: Iterable[str]) -> None:
        rpc = self.rpc()
        for name in names:
            rpc.supervisor.startProcess(name, False)

    def states(self) -> dict[str, str]:
        infos = cast(list[dict[str, Any]], self.rpc().supervisor.getAllProcessInfo())
        # Remembered for `recover`: what to stop if supervisord itself dies.
        self.pids = {info["name"]: info["pid"] for info in infos if info["pid"]}
        return {info["name"]: info["statename"] for info in infos}

    def recover(self) -> None:
        """After supervisord itself died: stop the programs it left running (adopted by the launcher, a
        subreaper) — the product's processes together, then the services — and start it again."""
        pids = getattr(self, "pids", {})
        first = min(program.priority for program in self.programs)
        services = [program for program in self.programs if program.priority == first]
        others = [program for program in self.programs if program.priority != first]
        for tier in (others, services):
            self._stop_orphans([(program, pids[program.name]) for program in tier if program.name in pids])
        self.pids = {}
        self.programs = [replace(program, autostart=True) for program in self.programs]
        self.start()

    @staticmethod
    def _stop_orphans(orphans: list[tuple[Program, int]]) -> None:
        for program, pid in orphans:
            # supervisord puts each program in its own process group: the group is the program.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, getattr(signal, f"SIG{program.stop_signal}"))
        deadline = time.monotonic() + max((program.stop_wait_s for program, _ in orphans), default=0)
        while any(_alive(pid) for _, pid in orphans) and time.monotonic() < deadline:
            reap_orphans(keep=None)
            time.sleep(POLL_S)
        for _, pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        reap_orphans(keep=None)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float) -> int | None:
        """SIGTERM: supervisord stops the programs in reverse priority order, each within its grace."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode
