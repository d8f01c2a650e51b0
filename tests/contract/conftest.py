"""The ``kafka`` fixture: every contract test runs once in memory (unit run) and once
against the real adapter and Tansu (marked ``integration``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.brokers import Broker, InMemory, Tansu


@pytest.fixture(params=["memory", pytest.param("tansu", marks=pytest.mark.integration)])
def kafka(request: pytest.FixtureRequest) -> Iterator[Broker]:
    # The real broker is looked up only for its own parameter, so the unit run starts none.
    harness = InMemory() if request.param == "memory" else Tansu(request.getfixturevalue("broker"))
    yield harness
    harness.close()
