"""README's compatibility table is what the real-client tests' compat marks say (tests/support/compat_table.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.compat import compat
from tests.support.compat_table import END, START, Proof, readme_with, table


@pytest.mark.slow
def test_the_readmes_table_is_the_one_the_marks_give():
    # Collects the marked tests (runs none of them) in a process of its own and compares README with them.
    check = subprocess.run(
        [sys.executable, "-m", "tests.support.compat_table", "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_a_cell_shows_only_the_texts_whose_every_test_passed():
    proofs = [
        Proof("t.py::a", "litellm", "call", "`completion`"),
        Proof("t.py::b", "litellm", "stream", "`stream=True`"),
        Proof("t.py::c", "litellm", "stream", "`stream=True`"),
        Proof("t.py::d", "litellm", "held call", "one request"),
    ]
    lines = table(proofs, passing={"t.py::a", "t.py::b", "t.py::d"})
    assert lines[0] == (
        "| client | call | stream | tools | structured output | route headers "
        "| held call (one job under default retries) |"
    )
    assert lines[2].endswith("| `completion` | — | — | — | — | one request |")  # c failed: its text is out
    assert len(lines) == 3  # only clients with a marked test get a row


def test_the_table_replaces_only_what_lies_between_its_markers():
    text = f"before\n  {START}\n  | old |\n  {END}\nafter\n"
    assert readme_with(text, ["| new |"]) == f"before\n  {START}\n  | new |\n  {END}\nafter\n"


def test_a_mark_naming_an_unknown_client_or_feature_is_refused():
    with pytest.raises(ValueError, match="unknown client"):
        compat("openai-ish", "call", "x")
    with pytest.raises(ValueError, match="unknown feature"):
        compat("openai", "telepathy", "x")
