"""The decoded fleet image's memory (pipeline/fleet.py): pydantic's per-object set of
given field names is shared between models with the same names, which changes nothing
a reader can see."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from remediator.domain.models import dump_json
from remediator.domain.state import InstanceState
from remediator.pipeline.fleet import share_fields_sets
from tests.builders import event, run
from tests.harness import Harness


def models_in(model: BaseModel) -> list[BaseModel]:
    found, stack = [], [model]
    while stack:
        obj = stack.pop()
        found.append(obj)
        for value in obj.__dict__.values():
            items = value.values() if isinstance(value, dict) else value
            if isinstance(value, BaseModel):
                stack.append(value)
            elif isinstance(value, list | tuple | dict):
                stack.extend(item for item in items if isinstance(item, BaseModel))
    return found


def fleet_of(count: int) -> Harness:
    harness = Harness()
    signals = [
        run(instance_id=f"i{n}", result="FAILED" if n % 3 else "PASSED") for n in range(count)
    ]
    harness.signal(*signals)
    harness.signal(*(event(instance_id=f"i{n}") for n in range(count)))
    return harness


def test_the_images_models_share_one_fields_set_per_combination_of_names() -> None:
    harness = fleet_of(60)
    states = list(harness.fleet.cluster(0, "c1").instances.values())
    models = [m for state in states for m in models_in(state)]
    assert len(models) > 200  # records, remembered ids, remediations, signals, alerts
    distinct = {id(m.__pydantic_fields_set__) for m in models}
    assert len(distinct) <= 30  # not one per object
    # What each says it was given is what it was given, and its JSON is the same.
    for state in states:
        fresh = InstanceState.model_validate_json(dump_json(state))
        given = [set(m.model_fields_set) for m in models_in(fresh)]
        share_fields_sets(fresh)
        assert [m.model_fields_set for m in models_in(fresh)] == given
        assert dump_json(fresh) == dump_json(state)


def test_a_change_to_a_model_sharing_its_set_leaves_the_others_alone() -> None:
    harness = fleet_of(6)
    first, second = (harness.state("c1", f"i{n}") for n in (2, 3))  # both waiting
    assert first is not None
    assert second is not None
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    before = set(second.model_fields_set)
    changed = first.model_copy(update={"held_for_human_at": first.watermark})
    assert "held_for_human_at" in changed.model_fields_set
    assert second.model_fields_set == before
    assert first.model_fields_set == before
    encoded = dump_json(changed)
    share_fields_sets(changed)
    assert dump_json(changed) == encoded
    assert "held_for_human_at" in changed.model_fields_set


def test_models_that_are_not_frozen_keep_their_own_set() -> None:
    class Loose(BaseModel):
        x: int = 0

    class Holder(BaseModel):
        model_config = ConfigDict(frozen=True)
        items: list[Loose]

    holders = [Holder(items=[Loose(x=1), Loose()]) for _ in range(2)]
    for holder in holders:
        share_fields_sets(holder)
    assert holders[0].__pydantic_fields_set__ is holders[1].__pydantic_fields_set__
    loose = [item for holder in holders for item in holder.items]
    assert len({id(item.__pydantic_fields_set__) for item in loose}) == 4
    loose[1].x = 5  # a mutable model adds to its own set only
    assert loose[1].model_fields_set == {"x"}
    assert loose[3].model_fields_set == set()
