"""README's compatibility table (a row per client, a column per feature), written from the tests that prove it.

    make compat-table                                  # runs the marked tests; writes the cells whose tests passed
    .venv/bin/python -m tests.support.compat_table --check   # runs nothing: exit 1 if README differs from the marks

Every real-client test carries `compat(client, feature, how)` marks (tests/support/compat.py). A cell is the
`how` texts of its marks, each shown only if every test carrying it passed in the run that wrote the table.
`--check` (and tests/routing/api/test_compat_table.py, which runs it) compares README with the table the
marks give when all of their tests pass, so a table written from a run with a failure, a mark added or
changed without regenerating, or a hand edit all fail the suite: the table cannot drift from the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tests.support.compat import CLIENTS, FEATURES

README = Path("README.md")
TESTS = "tests/routing/api"  # where the real-client tests live
START = "<!-- compat-table: written by `make compat-table` from the tests' compat marks; do not edit by hand -->"
END = "<!-- /compat-table -->"
INDENT = "  "  # the table sits in a list item of README's "What it does"


@dataclass(frozen=True)
class Proof:
    nodeid: str
    client: str
    feature: str
    how: str


class Recorder:
    """A pytest plugin: the compat marks of the collected tests and, when they run, each test's outcome."""

    def __init__(self) -> None:
        self.proofs: list[Proof] = []
        self.failed: set[str] = set()
        self.passed: set[str] = set()

    def pytest_collection_finish(self, session) -> None:
        for item in session.items:
            for mark in item.iter_markers("compat"):
                self.proofs.append(Proof(item.nodeid, **mark.kwargs))

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed:
            self.failed.add(report.nodeid)
        elif report.when == "call" and report.passed:
            self.passed.add(report.nodeid)

    def passing(self) -> set[str]:
        return self.passed - self.failed


def row_name(client: str) -> str:
    name, distribution, used = CLIENTS[client]
    try:
        installed = f"{distribution} {version(distribution)}"
    except PackageNotFoundError:
        installed = f"{distribution} not installed"
    return f"{name} ({installed}{', ' + used if used else ''})"


def table(proofs: Iterable[Proof], passing: set[str] | None = None) -> list[str]:
    """The table's lines. `passing` None: as if every marked test passed (what `--check` compares with)."""
    proofs = list(proofs)
    failing = {(p.client, p.feature, p.how) for p in proofs if passing is not None and p.nodeid not in passing}
    cells: dict[tuple[str, str], list[str]] = {}
    for proof in proofs:
        texts = cells.setdefault((proof.client, proof.feature), [])
        if (proof.client, proof.feature, proof.how) not in failing and proof.how not in texts:
            texts.append(proof.how)
    lines = [
        "| client | " + " | ".join(FEATURES.values()) + " |",
        "|---" * (len(FEATURES) + 1) + "|",
    ]
    for client in CLIENTS:
        if any(c == client for c, _ in cells):
            row = ["; ".join(cells.get((client, feature), [])) or "—" for feature in FEATURES]
            lines.append(f"| {row_name(client)} | " + " | ".join(row) + " |")
    return lines


def readme_with(text: str, lines: list[str]) -> str:
    before, start, rest = text.partition(START)
    _, end, after = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"README.md has no {START!r} … {END!r} block")
    body = "".join(f"{INDENT}{line}\n" for line in lines)
    return f"{before}{START}\n{body}{INDENT}{END}{after}"


def run_pytest(args: list[str]) -> Recorder:
    import pytest

    recorder = Recorder()
    pytest.main(["-p", "no:cacheprovider", *args], plugins=[recorder])
    return recorder


def collected_proofs() -> list[Proof]:
    """The marks, collected in a process of their own (pytest configures Django once per process)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-m", "tests.support.compat_table", "--list", out.name]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return [Proof(**proof) for proof in json.loads(Path(out.name).read_text())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if README's table is not what the marks give")
    mode.add_argument("--list", metavar="FILE", help="write the collected marks to FILE as JSON (runs nothing)")
    options, pytest_args = parser.parse_known_args()
    if options.list:
        proofs = run_pytest(["--collect-only", "-q", TESTS]).proofs
        Path(options.list).write_text(json.dumps([asdict(proof) for proof in proofs]))
        return 0
    if options.check:
        text = README.read_text()
        if readme_with(text, table(collected_proofs())) != text:
            print("README's compatibility table differs from the tests' compat marks: run `make compat-table`")
            return 1
        return 0
    proofs = collected_proofs()
    modules = sorted({proof.nodeid.split("::")[0] for proof in proofs})
    # The modules' django_db tests come along: they make pytest-django set up the test database.
    ran = run_pytest(["-m", "compat or django_db", *pytest_args, *modules])
    README.write_text(readme_with(README.read_text(), table(ran.proofs, ran.passing())))
    left_out = sorted({p.nodeid for p in ran.proofs} - ran.passing())
    for nodeid in left_out:
        print(f"left out of the table (did not pass): {nodeid}")
    return 1 if left_out else 0


if __name__ == "__main__":
    sys.exit(main())
