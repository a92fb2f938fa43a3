"""`make run`'s terminal: every program's output, each line prefixed with the program's name (honcho's
printer, as `make run` has always shown it), followed from the log files supervisord writes."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from datetime import datetime
from typing import TextIO

from honcho.colour import get_colours
from honcho.printer import Message, Printer

from controlplane.supervision import POLL_S, Supervisor


class LogFollower:
    """Prints every new line of the programs' log files (and supervisord's own output) with a prefix."""

    def __init__(self, supervisor: Supervisor, output: TextIO = sys.stdout) -> None:
        names = [program.name for program in supervisor.programs]
        width = max(len(name) for name in [*names, "supervisor"])
        self.printer = Printer(output, width=width)
        self.colours = dict(zip([*names, "supervisor"], get_colours(), strict=False))
        self.files = {name: supervisor.log_dir / f"{name}.log" for name in names}
        self.supervisor = supervisor
        self.stopped = threading.Event()

    def _print(self, name: str, text: str) -> None:
        message = Message(type="line", data=text, time=datetime.now(), name=name, colour=self.colours.get(name))
        self.printer.write(message)

    def start(self) -> None:
        # Start at the files' current ends: what an earlier run logged is in the files, not repeated.
        self.offsets = {name: (path.stat().st_size if path.exists() else 0) for name, path in self.files.items()}
        self.handles: dict[str, tuple[io.BufferedReader, int]] = {}
        self.partial = dict.fromkeys(self.files, b"")
        self.threads = [threading.Thread(target=self._follow_files, daemon=True)]
        self.threads[0].start()
        self.follow_supervisord()

    def follow_supervisord(self) -> None:
        """Print supervisord's own output (again, after `Supervisor.recover` started a new one)."""
        thread = threading.Thread(target=self._follow_supervisord, args=(self.supervisor.process,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def stop(self) -> None:
        """After supervisord has exited: print what the programs wrote while they stopped."""
        self.stopped.set()
        for thread in getattr(self, "threads", []):
            thread.join(timeout=5)

    def _follow_supervisord(self, process: subprocess.Popen[bytes] | None) -> None:
        assert process is not None and process.stdout is not None
        for raw in process.stdout:
            # Its lines carry their own date and time; ours is in the prefix.
            line = raw.decode(errors="replace").rstrip("\n")
            self._print("supervisor", line.split(" ", 2)[-1] if line[:2] == "20" else line)

    def _follow_files(self) -> None:
        while not self.stopped.wait(POLL_S):
            self._print_new_lines()
        self._print_new_lines()
        for handle, _inode in self.handles.values():
            handle.close()

    def _print_new_lines(self) -> None:
        for name, path in self.files.items():
            try:
                inode = path.stat().st_ino
            except FileNotFoundError:
                continue
            handle = self.handles.get(name)
            if handle is None or handle[1] != inode:
                if handle is not None:
                    self.partial[name] += handle[0].read()  # the rest of a file that was rotated
                    handle[0].close()
                opened = path.open("rb")
                opened.seek(self.offsets.pop(name, 0))
                self.handles[name] = handle = (opened, inode)
            lines = (self.partial[name] + handle[0].read()).split(b"\n")
            self.partial[name] = lines.pop()
            for line in lines:
                self._print(name, line.decode(errors="replace"))
