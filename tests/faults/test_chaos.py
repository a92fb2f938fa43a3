"""Every fault scenario, on the embedded defaults and with RabbitMQ (quorum queues): `pytest -m chaos tests/faults`.
`make chaos` runs the same scenarios and writes the report (tests/faults/__main__.py)."""

from __future__ import annotations

import pytest

from tests.faults.conftest import assert_passed, stack_for
from tests.faults.scenarios import SCENARIOS, run

pytestmark = pytest.mark.chaos
PORTS = {"redis": 8930, "rabbitmq": 8940}


@pytest.mark.parametrize(
    ("broker", "scenario"), [(b, s) for b in PORTS for s in SCENARIOS], ids=lambda v: getattr(v, "name", v)
)
def test_a_fault_costs_seconds_never_jobs(stacks, broker, scenario):
    assert_passed(run(stack_for(stacks, broker, PORTS[broker]), scenario))
