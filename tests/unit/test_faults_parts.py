"""The fault suite's own parts (tests/faults): a checker that could not fail, or a proxy that
did not cut, would make its table worthless."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests.faults.checker import Outcome, _check_transitions
from tests.faults.generator import fleet, stream, with_disorder
from tests.faults.model import Expected
from tests.faults.proxy import CuttableProxy


def transition(rid: str, instance: str, sequence: int, tid: str | None = None) -> dict[str, Any]:
    return {
        "transition_id": tid or f"{rid}:{sequence}",
        "remediation_id": rid,
        "sequence": sequence,
        "from_state": None if sequence == 1 else "PENDING_APPROVAL",
        "to_state": "PENDING_APPROVAL",
        "remediation": {"cluster_id": "c", "instance_id": instance},
    }


def expected(*sick: str, healthy: tuple[str, ...] = ()) -> Expected:
    model = Expected()
    model.remediated = {f"c/{i}" for i in sick}
    model.untouched = {f"c/{i}" for i in healthy}
    return model


def checked(values: list[dict[str, Any]], model: Expected) -> Outcome:
    outcome = Outcome("unit", expected=len(model.remediated))
    _check_transitions(outcome, values, model)
    return outcome


def test_exactly_once_with_identical_repeats_passes() -> None:
    values = [transition("r1", "a", 1), transition("r1", "a", 2), transition("r1", "a", 1)]
    outcome = checked(values, expected("a", healthy=("b",)))
    assert outcome.ok, outcome.failures
    assert (outcome.found, outcome.repeats, outcome.duplicates, outcome.losses) == (1, 1, 0, 0)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([transition("r1", "a", 1), transition("r2", "a", 1)], "duplicate"),
        ([transition("r1", "a", 1), transition("r1", "a", 3)], "not contiguous"),
        ([], "missing"),
        ([transition("r1", "a", 1), transition("r9", "b", 1)], "healthy"),
        (
            [transition("r1", "a", 1), {**transition("r1", "a", 1), "to_state": "PENDING"}],
            "other content",
        ),
    ],
)
def test_each_broken_invariant_is_a_failure(values: list[dict[str, Any]], words: str) -> None:
    outcome = checked(values, expected("a", healthy=("b",)))
    assert not outcome.ok
    assert any(words in failure for failure in outcome.failures), outcome.failures


def test_the_model_expects_one_remediation_per_sick_instance_whatever_the_disorder() -> None:
    rng = random.Random(3)
    shape = fleet("c", 20, 30)
    signals = with_disorder(shape, stream(shape, rng), rng)
    model = Expected()
    model.add(signals)
    assert model.remediated == {f"c/{i}" for i in shape.sick}
    assert model.untouched == {f"c/{i}" for i in shape.healthy}
    ids = [s.signal_id for s in signals]
    assert len(set(ids)) < len(ids), "with_disorder re-sends some signals"
    assert len({s.value for s in signals}) == len(set(ids)), "a re-send is a byte copy"


async def test_the_proxy_relays_cuts_and_restores() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = CuttableProxy("127.0.0.1", server.sockets[0].getsockname()[1])
    proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"ping")
        assert await reader.read(4) == b"ping"
        await asyncio.to_thread(proxy.cut)
        assert await reader.read(4) == b"", "an open connection is cut"
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", proxy.port)  # refused while cut
        proxy.restore()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"pong")
        assert await reader.read(4) == b"pong"
        writer.close()
    finally:
        await asyncio.to_thread(proxy.stop)
        server.close()
