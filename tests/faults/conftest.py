"""A whole `make run` stack per broker, on ports of the fault suite's own (89xx), shared by a module's scenarios."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.scenarios import Result
from tests.faults.stack import Stack, StackConfig


def assert_passed(result: Result) -> None:
    assert result.passed, f"{result.broker} / {result.scenario}:\n  " + "\n  ".join(result.failures())


@pytest.fixture(scope="module")
def stacks() -> Iterator[dict[str, Stack]]:
    """Started on first use, stopped (services and all) at the end of the module."""
    started: dict[str, Stack] = {}
    yield started
    for stack in started.values():
        stack.stop()
        stack.remove()


def stack_for(stacks: dict[str, Stack], broker: str, port: int) -> Stack:
    if broker not in stacks:
        stack = Stack(StackConfig(broker=broker, port=port, modelserver_port=port + 1))
        stacks[broker] = stack
        stack.start()
    return stacks[broker]
