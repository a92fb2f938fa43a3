"""The fault suite's short run, part of `make test`: a provider answering 429 with a one-hour Retry-After, under
client load on a whole `make run` stack (embedded services, Redis as the broker). The rest: `make chaos`."""

from __future__ import annotations

import pytest

from tests.faults.conftest import assert_passed, stack_for
from tests.faults.scenarios import SCENARIOS, run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.quick], ids=lambda s: s.name)
def test_a_fault_costs_seconds_never_jobs(stacks, scenario):
    assert_passed(run(stack_for(stacks, "redis", 8920), scenario))
