"""Every counter of the vocabulary, checked on hand-built Craftax states."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from craftax.craftax_classic.constants import Action, BlockType
from scenes import P, T, scene, with_mob

from oir.events import (
    ACHIEVEMENTS,
    COUNTER_INDEX,
    COUNTER_NAMES,
    EVENT_NAMES,
    INVENTORY_ITEMS,
    LEVEL_NAMES,
    NEAR_BLOCKS,
    NUM_EVENTS,
    PLACEABLES,
    VITALS,
)


def fired(single_step, state, action, tries: int = 1):
    """Event names with non-zero counts after one step (retried over keys for chance events)."""
    for i in range(tries):
        _, new, _, _, events, levels = single_step(jax.random.PRNGKey(i), state, jnp.int32(action.value))
        names = {EVENT_NAMES[k]: int(v) for k, v in enumerate(np.asarray(events)) if v}
        if names:
            return names, new, np.asarray(levels)
    return {}, new, np.asarray(levels)


ACTION_CASES = {
    "collect_wood": (dict(target=BlockType.TREE), Action.DO),
    "collect_stone": (dict(target=BlockType.STONE, wood_pickaxe=1), Action.DO),
    "collect_coal": (dict(target=BlockType.COAL, wood_pickaxe=1), Action.DO),
    "collect_iron": (dict(target=BlockType.IRON, stone_pickaxe=1), Action.DO),
    "collect_diamond": (dict(target=BlockType.DIAMOND, iron_pickaxe=1), Action.DO),
    "collect_drink": (dict(target=BlockType.WATER), Action.DO),
    "eat_plant": (dict(target=BlockType.RIPE_PLANT), Action.DO),
    "place_table": (dict(wood=9), Action.PLACE_TABLE),
    "place_stone": (dict(stone=1), Action.PLACE_STONE),
    "place_plant": (dict(sapling=1), Action.PLACE_PLANT),
}


@pytest.mark.parametrize("name", sorted(ACTION_CASES))
def test_block_achievements_fire(single_step, fresh_world, name):
    kwargs, action = ACTION_CASES[name]
    names, _, _ = fired(single_step, scene(fresh_world, **kwargs), action)
    assert {k for k in names if k in ACHIEVEMENTS} == {name}
    assert names[name] == 1


def test_collect_sapling_fires(single_step, fresh_world):
    names, _, _ = fired(single_step, scene(fresh_world, target=BlockType.GRASS), Action.DO, tries=200)
    assert names.get("collect_sapling") == 1


@pytest.mark.parametrize("kind,event", [("cows", "eat_cow"), ("zombies", "defeat_zombie"), ("skeletons", "defeat_skeleton")])
def test_mob_achievements_fire(single_step, fresh_world, kind, event):
    state = with_mob(scene(fresh_world), kind, health=1)
    names, _, _ = fired(single_step, state, Action.DO)
    assert names.get(event) == 1


CRAFT = {
    "make_wood_pickaxe": (Action.MAKE_WOOD_PICKAXE, dict(wood=9), False),
    "make_wood_sword": (Action.MAKE_WOOD_SWORD, dict(wood=9), False),
    "make_stone_pickaxe": (Action.MAKE_STONE_PICKAXE, dict(wood=9, stone=9), False),
    "make_stone_sword": (Action.MAKE_STONE_SWORD, dict(wood=9, stone=9), False),
    "make_iron_pickaxe": (Action.MAKE_IRON_PICKAXE, dict(wood=9, stone=9, coal=9, iron=9), True),
    "make_iron_sword": (Action.MAKE_IRON_SWORD, dict(wood=9, stone=9, coal=9, iron=9), True),
}


@pytest.mark.parametrize("name", sorted(CRAFT))
def test_crafting_fires(single_step, fresh_world, name):
    action, inv, furnace = CRAFT[name]
    state = scene(fresh_world, target=BlockType.CRAFTING_TABLE, **inv)
    if furnace:
        state = state.replace(map=state.map.at[P[0] + 1, P[1]].set(BlockType.FURNACE.value))
    names, _, _ = fired(single_step, state, action)
    assert {k for k in names if k in ACHIEVEMENTS} == {name}


def test_place_furnace_and_wake_up_fire(single_step, fresh_world):
    state = scene(fresh_world, stone=9)
    state = state.replace(map=state.map.at[P[0], P[1] - 1].set(BlockType.CRAFTING_TABLE.value))
    names, _, _ = fired(single_step, state, Action.PLACE_FURNACE)
    assert names.get("place_furnace") == 1
    sleepy = scene(fresh_world).replace(is_sleeping=jnp.asarray(True), player_energy=jnp.asarray(9, jnp.int32))
    names, new, _ = fired(single_step, sleepy, Action.NOOP)
    assert names.get("wake_up") == 1 and not bool(new.is_sleeping)


def test_all_achievements_are_tested():
    tested = set(ACTION_CASES) | set(CRAFT) | {"collect_sapling", "eat_cow", "defeat_zombie",
                                                "defeat_skeleton", "place_furnace", "wake_up"}
    assert tested == set(ACHIEVEMENTS)


def test_repeat_collections_count_every_time(single_step, fresh_world):
    """Three wood collected counts 3, not just the achievement unlocked once."""
    state = scene(fresh_world, target=BlockType.TREE)
    total = 0
    for i in range(3):
        _, state, _, _, events, levels = single_step(jax.random.PRNGKey(i), state, jnp.int32(Action.DO.value))
        state = state.replace(map=state.map.at[T].set(BlockType.TREE.value))  # mined trees turn to grass
        total += int(events[COUNTER_INDEX["collect_wood"]])
    assert total == 3
    assert int(levels[LEVEL_NAMES.index("inventory_wood")]) == 3
    # The game's own sticky achievement bit is kept.
    assert bool(state.achievements[ACHIEVEMENTS.index("collect_wood")])


def test_noop_fires_nothing(single_step, fresh_world):
    names, _, _ = fired(single_step, scene(fresh_world), Action.NOOP)
    assert names == {}


@pytest.mark.parametrize("placed", PLACEABLES)
def test_every_placement_near_counter(single_step, fresh_world, placed):
    action = {"table": Action.PLACE_TABLE, "furnace": Action.PLACE_FURNACE,
              "stone": Action.PLACE_STONE, "plant": Action.PLACE_PLANT}[placed]
    for near, blocks in NEAR_BLOCKS.items():
        state = scene(fresh_world, wood=9, stone=9, sapling=9)
        # A neighbour of the faced cell that is not next to the player.
        state = state.replace(map=state.map.at[T[0] - 1, T[1] + 1].set(blocks[0].value))
        if placed == "furnace" and near != "table":
            # The furnace needs a table next to the player, out of the faced cell's reach.
            state = state.replace(map=state.map.at[P[0], P[1] - 1].set(BlockType.CRAFTING_TABLE.value))
        names, _, _ = fired(single_step, state, action)
        placements = {k for k in names if k.startswith("place_") and "_near_" in k}
        assert placements == {f"place_{placed}_near_{near}"}, (placed, near, names)


def test_levels_are_current_values(single_step, fresh_world):
    inv = {item: (i % 9) + 1 for i, item in enumerate(INVENTORY_ITEMS)}
    state = scene(fresh_world, **inv).replace(
        player_health=jnp.asarray(7, jnp.int32), player_food=jnp.asarray(6, jnp.int32),
        player_drink=jnp.asarray(5, jnp.int32), player_energy=jnp.asarray(4, jnp.int32),
    )
    _, new, _ = fired(single_step, state, Action.NOOP)
    _, _, _, _, _, levels = single_step(jax.random.PRNGKey(0), state, jnp.int32(Action.NOOP.value))
    got = dict(zip(LEVEL_NAMES, np.asarray(levels).tolist(), strict=True))
    for item in INVENTORY_ITEMS:
        assert got[f"inventory_{item}"] == inv[item]
    vitals = {"health": new.player_health, "food": new.player_food,
              "drink": new.player_drink, "energy": new.player_energy}
    for v in VITALS:
        assert got[v] == int(vitals[v])
    assert 4 <= got["health"] <= 9 and got["energy"] in (3, 4, 5)


def test_vocabulary_is_complete_and_ordered():
    assert len(set(COUNTER_NAMES)) == len(COUNTER_NAMES)
    assert COUNTER_NAMES[:22] == ACHIEVEMENTS and len(ACHIEVEMENTS) == 22
    assert 22 + len(PLACEABLES) * len(NEAR_BLOCKS) == NUM_EVENTS
    for need in ("inventory_wood", "health", "food", "drink", "energy", "place_table_near_water"):
        assert need in COUNTER_INDEX
