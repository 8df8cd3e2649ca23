"""Narration: deterministic, compact text from segments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from craftax.craftax_classic.constants import Action, BlockType
from scenes import T, scene

from oir.events import COUNTER_INDEX, LEVEL_NAMES, NUM_EVENTS, NUM_LEVELS, nearby_from_obs
from oir.narrate import NEARBY_NAMES, NUM_NEARBY, Segment, narrate, narrate_batch
from oir.relabel import NarratorRelabeler, verify
from oir.tasks import first_success, parse_spec


def hand_segment() -> Segment:
    steps = 6
    events = np.zeros((steps, NUM_EVENTS), np.int32)
    levels = np.zeros((steps + 1, NUM_LEVELS), np.int32)
    levels[:, LEVEL_NAMES.index("health")] = 9
    levels[:, LEVEL_NAMES.index("drink")] = [5, 5, 6, 7, 7, 7, 7]
    for t in (1, 2):  # steps 2 and 3 drink
        events[t, COUNTER_INDEX["collect_drink"]] = 1
    events[4, COUNTER_INDEX["place_table"]] = 1
    events[4, COUNTER_INDEX["place_table_near_water"]] = 1
    levels[5:, LEVEL_NAMES.index("inventory_wood")] = 1
    nearby = np.zeros((steps + 1, NUM_NEARBY), bool)
    nearby[:, NEARBY_NAMES.index("water")] = True
    nearby[-1, NEARBY_NAMES.index("cow")] = True
    return Segment(events, levels, nearby)


def test_narration_text():
    text = narrate(hand_segment())
    assert text == "\n".join([
        "Segment of 6 steps.",
        "Start: health 9, food 0, drink 5, energy 0; inventory: nothing; nearby: water.",
        "t=2..3 drank water x2 (drink 7)",
        "t=5 placed a crafting table next to water (wood 1)",
        "End: health 9, food 0, drink 7, energy 0; inventory: wood 1; nearby: water; cow.",
    ])
    assert narrate_batch([hand_segment(), hand_segment()]) == [text, text]


def test_segment_from_real_steps_narrates_and_verifies(single_step, fresh_world):
    """Collect wood three times and place a table on real Craftax steps, then narrate."""
    from craftax.craftax_classic.envs.craftax_symbolic_env import render_craftax_symbolic

    state = scene(fresh_world, target=BlockType.TREE)
    events, levels, nearby = [], [], []
    start_levels = None
    for i, action in enumerate([Action.DO, Action.DO, Action.DO, Action.NOOP, Action.PLACE_TABLE]):
        if start_levels is None:
            from oir.events import levels_of
            start_levels = np.asarray(levels_of(state))
            nearby.append(np.asarray(nearby_from_obs(render_craftax_symbolic(state))))
        obs, state, _, _, ev, lv = single_step(jax.random.PRNGKey(i), state, jnp.int32(action.value))
        if action == Action.DO:
            state = state.replace(map=state.map.at[T].set(BlockType.TREE.value))
        if i == 3:
            state = state.replace(map=state.map.at[T].set(BlockType.GRASS.value))
        events.append(np.asarray(ev))
        levels.append(np.asarray(lv))
        nearby.append(np.asarray(nearby_from_obs(obs)))
    seg = Segment(np.stack(events), np.stack([start_levels, *levels]), np.stack(nearby))
    text = narrate(seg)
    assert "t=1..3 collected wood x3 (wood 3)" in text
    assert "t=5 placed a crafting table" in text
    assert narrate(seg) == text
    spec = parse_spec({"all": [{"counter": "collect_wood", "at_least": 3}, {"counter": "place_table", "at_least": 1}], "ordered": True})
    assert first_success(spec, seg.counters()) == 5
    # The narrator relabeler's proposals for this real segment all hold on it.
    kept, flawed = verify(seg, NarratorRelabeler().propose(seg))
    assert not flawed and {r.step for r in kept} >= {3, 5}
