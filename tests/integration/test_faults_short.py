"""The fault suite's short form, inside ``make test``: four scenarios of tests/faults, small
(``make test-faults`` runs all seven at full size and prints the table)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.faults.runner import SCENARIOS, SHORT, table
from tests.faults.scenarios import Suite
from tests.integration.conftest import Broker

# Broker-sensitive: run on Tansu and on Apache Kafka (conftest.py).
pytestmark = pytest.mark.brokers("tansu", "kafka")


@pytest.mark.parametrize("name", SHORT)
async def test_fault_scenario_small(name: str, broker: Broker, tmp_path: Path) -> None:
    seed = random.randrange(10**6)
    outcome = await SCENARIOS[name](Suite(broker, tmp_path, random.Random(seed), short=True))
    assert outcome.ok, "\n".join(
        [f"seed {seed}", table([outcome]), *outcome.failures, *outcome.notes]
    )
