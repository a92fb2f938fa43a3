"""The canonical arguments a grant binds: the server's and the verifier printed in GRANTS.md agree on
every JSON value, and only a change of value (never of key order, whitespace, JSON text or 150 vs 150.0)
changes the digest."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from routing.services.grants import arguments_sha256, canonical_arguments

GRANTS_DOC = Path(__file__).resolve().parents[3] / "routing" / "api" / "GRANTS.md"
_code = re.search(r"```python verify_grant\.py\n(.*?)```", GRANTS_DOC.read_text(), re.DOTALL).group(1)
_printed: dict = {}
exec(compile(_code, "verify_grant.py", "exec"), _printed)  # noqa: S102 - the documented code, run as printed
printed_canonical = _printed["canonical"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), values, max_size=6))
def test_the_server_and_the_printed_verifier_write_the_same_bytes(arguments):
    assert canonical_arguments(arguments) == printed_canonical(arguments)
    # As chat completions give it: JSON text, in any key order and spacing.
    text = json.dumps(dict(reversed(list(arguments.items()))), indent=2)
    assert canonical_arguments(text) == printed_canonical(text) == canonical_arguments(arguments)
    assert arguments_sha256(text) == hashlib.sha256(printed_canonical(arguments)).hexdigest()


@given(st.integers(-(2**40), 2**40), st.integers(1, 1000))
def test_only_a_changed_value_changes_the_digest(amount, delta):
    approved = arguments_sha256({"amount": amount, "order": "A-17"})
    assert arguments_sha256({"order": "A-17", "amount": float(amount)}) == approved
    assert arguments_sha256({"amount": amount + delta, "order": "A-17"}) != approved
    assert arguments_sha256({"amount": amount + 0.5, "order": "A-17"}) != approved
    assert arguments_sha256({"amount": str(amount), "order": "A-17"}) != approved
    assert arguments_sha256({"amount": amount, "order": "A-17", "note": None}) != approved
