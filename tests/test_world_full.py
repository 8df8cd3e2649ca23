"""Full Craftax's counters (oir.worlds.craftax_full), checked on hand-built states.

One jitted reset and one jitted step_with_events are shared by the whole module: a full-Craftax
step costs about a minute to compile cold (seconds from the persistent cache).
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from craftax.craftax.constants import Achievement, Action, BlockType, ItemType

from oir import events as classic
from oir.worlds import craftax_full as w

P = (20, 20)  # the player, on floor 0
T = (20, 21)  # the faced cell
RIGHT = 2  # craftax direction index: facing (0, +1)


@pytest.fixture(scope="module")
def world():
    from craftax.craftax.envs.craftax_symbolic_env import CraftaxSymbolicEnvNoAutoReset

    env = CraftaxSymbolicEnvNoAutoReset()
    params = env.default_params
    _, state = jax.jit(env.reset_env)(jax.random.PRNGKey(0), params)
    step = jax.jit(lambda k, s, a: w.step_with_events(env, k, s, a, params))
    return SimpleNamespace(env=env, params=params, state=state, step=step)


def scene(state, target=BlockType.PATH, **inventory):
    """The player at P on floor 0 facing T in a 7x7 patch of path, no mobs anywhere, awake."""
    m = state.map.at[0, P[0] - 3 : P[0] + 4, P[1] - 3 : P[1] + 4].set(BlockType.PATH.value)
    m = m.at[0, T[0], T[1]].set(target.value)
    items = state.item_map.at[0, P[0] - 3 : P[0] + 4, P[1] - 3 : P[1] + 4].set(ItemType.NONE.value)
    inv = state.inventory.replace(**{k: jnp.asarray(v, jnp.int32) for k, v in inventory.items()})
    no_mobs = lambda mobs: mobs.replace(mask=jnp.zeros_like(mobs.mask))  # noqa: E731
    return state.replace(
        map=m,
        item_map=items,
        mob_map=jnp.zeros_like(state.mob_map),
        player_level=jnp.asarray(0, jnp.int32),
        player_position=jnp.array(P, jnp.int32),
        player_direction=jnp.asarray(RIGHT, jnp.int32),
        inventory=inv,
        melee_mobs=no_mobs(state.melee_mobs),
        passive_mobs=no_mobs(state.passive_mobs),
        ranged_mobs=no_mobs(state.ranged_mobs),
        mob_projectiles=no_mobs(state.mob_projectiles),
        player_projectiles=no_mobs(state.player_projectiles),
        is_sleeping=jnp.asarray(False),
        is_resting=jnp.asarray(False),
    )


def step(world, state, action: Action, seed: int = 0):
    """(state, reward, {event: count} of the non-zero events, {level: value})."""
    _, new, reward, _, events, levels = world.step(jax.random.PRNGKey(seed), state, jnp.int32(action.value))
    fired = {w.EVENT_NAMES[i]: int(v) for i, v in enumerate(np.asarray(events)) if v}
    return new, float(reward), fired, dict(zip(w.LEVEL_NAMES, np.asarray(levels).tolist(), strict=True))


def test_vocabulary_layout():
    assert (len(w.EVENT_NAMES), len(w.LEVEL_NAMES)) == (w.NUM_EVENTS, w.NUM_LEVELS)
    assert w.COUNTER_NAMES == w.EVENT_NAMES + w.LEVEL_NAMES and len(set(w.COUNTER_NAMES)) == w.NUM_COUNTERS
    # state.achievements is indexed by value, and Achievement's definition order differs from it.
    assert all(w.ACHIEVEMENTS[a.value] == a.name.lower() for a in Achievement)
    assert w.EVENT_NAMES[: len(Achievement)] == w.ACHIEVEMENTS
    assert all(isinstance(c, classic.Counter) for c in w.COUNTERS)
    assert [c.name for c in w.COUNTERS] == list(w.COUNTER_NAMES)
    assert all(c.relative == (c.name in w.EVENT_NAMES) for c in w.COUNTERS)
    assert {"descend", "ascend", "open_chest", "kill_zombie", "kill_cow", "drink_potion_red",
            "learn_spell_fireball", "cast_iceball", "place_torch_near_water"} <= set(w.EVENT_NAMES)  # fmt: skip
    assert {"floor", "inventory_pickaxe", "inventory_helmet", "inventory_potion_cyan", "mana", "xp"} <= set(w.LEVEL_NAMES)


def test_levels_read_the_state(world):
    s = scene(world.state, wood=7, pickaxe=3, books=2)
    s = s.replace(
        player_level=jnp.asarray(4, jnp.int32),
        inventory=s.inventory.replace(armour=jnp.array([1, 2, 0, 0], jnp.int32),
                                      potions=jnp.array([0, 0, 0, 5, 0, 0], jnp.int32)),
        player_health=jnp.asarray(3.6, jnp.float32),
        player_mana=jnp.asarray(6, jnp.int32),
        player_xp=jnp.asarray(2, jnp.int32),
        player_intelligence=jnp.asarray(3, jnp.int32),
    )  # fmt: skip
    lv = dict(zip(w.LEVEL_NAMES, np.asarray(w.levels_of(s)).tolist(), strict=True))
    assert lv["floor"] == 4
    assert (lv["inventory_wood"], lv["inventory_pickaxe"], lv["inventory_books"]) == (7, 3, 2)
    assert (lv["inventory_helmet"], lv["inventory_chestplate"], lv["inventory_leggings"]) == (1, 2, 0)
    assert lv["inventory_potion_pink"] == 5 and lv["inventory_potion_red"] == 0
    assert (lv["health"], lv["mana"], lv["xp"], lv["intelligence"]) == (3, 6, 2, 3)
    # A living player never reads health 0: the game shows a fraction of a point as 1.
    assert w.levels_of(s.replace(player_health=jnp.asarray(0.3, jnp.float32)))[w.LEVEL_NAMES.index("health")] == 1


def test_floor_changes_count_every_time(world):
    s = scene(world.state)
    s = s.replace(
        item_map=s.item_map.at[0, P[0], P[1]].set(ItemType.LADDER_DOWN.value),
        down_ladders=s.down_ladders.at[0].set(jnp.array(P, jnp.int32)),
        monsters_killed=s.monsters_killed.at[0].set(8),  # a floor must be cleared to go down
    )
    s1, r1, ev1, lv1 = step(world, s, Action.DESCEND)
    assert ev1 == {"descend": 1, "enter_dungeon": 1} and lv1["floor"] == 1
    assert lv1["xp"] == int(s.player_xp) + 1  # the game's first-visit xp
    assert r1 == pytest.approx(3 + 0.1 * float(s1.player_health - s.player_health), abs=1e-5)

    s2, _, ev2, lv2 = step(world, s1, Action.ASCEND)
    assert ev2 == {"ascend": 1} and lv2["floor"] == 0

    s3, r3, ev3, lv3 = step(world, s2, Action.DESCEND)
    assert ev3 == {"descend": 1, "enter_dungeon": 1} and lv3["floor"] == 1
    # The entry bit stayed set through the step, so the game neither pays xp nor reward again.
    assert lv3["xp"] == lv1["xp"]
    assert r3 == pytest.approx(0.1 * float(s3.player_health - s2.player_health), abs=1e-5)


KILLS = {
    # (mobs field, type id, action, inventory): the events that must fire, each once
    "cow": ("passive_mobs", 0, Action.DO, {}, {"kill_cow", "eat_cow"}),
    "zombie": ("melee_mobs", 0, Action.DO, {}, {"kill_zombie", "defeat_zombie"}),
    "kobold": ("ranged_mobs", 3, Action.DO, {}, {"kill_kobold", "defeat_kobold"}),
    # A shot cow dies uneaten: only the kill counter sees it.
    "shot_cow": ("passive_mobs", 0, Action.SHOOT_ARROW, {"bow": 1, "arrows": 3}, {"kill_cow", "fire_bow"}),
}


@pytest.mark.parametrize("case", sorted(KILLS))
def test_kill_by_kind(world, case):
    field, type_id, action, inventory, expected = KILLS[case]
    s = scene(world.state, **inventory)
    # Walls around the faced cell so a passive mob cannot wander off before the arrow flies.
    for dr, dc in ((-1, 0), (1, 0), (0, 1)):
        s = s.replace(map=s.map.at[0, T[0] + dr, T[1] + dc].set(BlockType.STONE.value))
    mobs = getattr(s, field)
    mobs = mobs.replace(
        position=mobs.position.at[0, 0].set(jnp.array(T, jnp.int32)),
        health=mobs.health.at[0, 0].set(0.5),
        mask=mobs.mask.at[0, 0].set(True),
        type_id=mobs.type_id.at[0, 0].set(type_id),
    )
    s = s.replace(**{field: mobs}, mob_map=s.mob_map.at[0, T[0], T[1]].set(True))
    _, _, fired, _ = step(world, s, action)
    killish = {k: v for k, v in fired.items() if k.startswith(("kill_", "defeat_", "eat_", "fire_"))}
    assert killish == dict.fromkeys(expected, 1)


def test_potion_drunk_by_colour(world):
    s = scene(world.state)
    s = s.replace(inventory=s.inventory.replace(potions=jnp.array([2, 0, 1, 0, 0, 0], jnp.int32)))
    seen = []
    for action in (Action.DRINK_POTION_RED, Action.DRINK_POTION_BLUE, Action.DRINK_POTION_RED, Action.DRINK_POTION_RED):
        s, _, fired, lv = step(world, s, action)
        seen.append(({k for k in fired if k.startswith("drink_potion")}, lv["inventory_potion_red"], lv["inventory_potion_blue"]))
    assert seen == [
        ({"drink_potion", "drink_potion_red"}, 1, 1),
        ({"drink_potion", "drink_potion_blue"}, 1, 0),
        ({"drink_potion", "drink_potion_red"}, 0, 0),  # the achievement again: not sticky
        (set(), 0, 0),  # none left
    ]
    assert bool(s.achievements[Achievement.DRINK_POTION.value])


def test_achievements_count_every_time_not_sticky(world):
    # collect_drink: the game sets its bit when it happens; cleared before each step.
    s = scene(world.state, target=BlockType.WATER)
    s = s.replace(player_drink=jnp.asarray(1, jnp.int32))
    s1, r1, ev1, _ = step(world, s, Action.DO)
    s2, r2, ev2, _ = step(world, s1, Action.DO)
    assert ev1.get("collect_drink") == 1 and ev2.get("collect_drink") == 1
    assert bool(s2.achievements[Achievement.COLLECT_DRINK.value])
    # Craftax pays an achievement once: the restored sticky bit must keep the second step unpaid.
    assert r1 == pytest.approx(1 + 0.1 * float(s1.player_health - s.player_health), abs=1e-5)
    assert r2 == pytest.approx(0.1 * float(s2.player_health - s1.player_health), abs=1e-5)

    # collect_wood: the game derives its bit from wood > 0 every step, so it is counted from
    # the wood gained; holding wood must not count again.
    s = scene(world.state, target=BlockType.TREE)
    s1, _, ev1, lv1 = step(world, s, Action.DO)
    s2, _, ev2, _ = step(world, s1, Action.NOOP)
    s2 = s2.replace(map=s2.map.at[0, T[0], T[1]].set(BlockType.TREE.value))  # mined trees turn to grass
    _, _, ev3, lv3 = step(world, s2, Action.DO)
    assert (ev1.get("collect_wood"), ev2.get("collect_wood"), ev3.get("collect_wood")) == (1, None, 1)
    assert (lv1["inventory_wood"], lv3["inventory_wood"]) == (int(s.inventory.wood) + 1, int(s.inventory.wood) + 2)


def test_placement_near_a_block(world):
    s = scene(world.state, wood=9, torches=2)
    s = s.replace(map=s.map.at[0, T[0], T[1] + 1].set(BlockType.WATER.value))
    _, _, fired, _ = step(world, s, Action.PLACE_TABLE)
    assert {k for k in fired if k.startswith("place_")} == {"place_table", "place_table_near_water", "place_table_near_path"}
    _, _, fired, lv = step(world, s, Action.PLACE_TORCH)
    assert {k for k in fired if k.startswith("place_")} == {"place_torch", "place_torch_near_water", "place_torch_near_path"}
    assert lv["inventory_torches"] == 1


def test_learn_spell(world):
    s = scene(world.state, books=1)
    s1, _, fired, lv = step(world, s, Action.READ_BOOK)
    learnt = [i for i, sp in enumerate(w.SPELLS) if fired.get(f"learn_spell_{sp}")]
    assert len(learnt) == 1 and bool(s1.learned_spells[learnt[0]])
    assert fired.get(f"learn_{w.SPELLS[learnt[0]]}") == 1 and lv["inventory_books"] == 0


@pytest.mark.slow
def test_state_and_reward_match_a_plain_step(world):
    """Over a random rollout, the restored state and the reward equal Craftax's own step."""
    plain = jax.jit(lambda k, s, a: world.env.step_env(k, s, a, world.params))
    s = scene(world.state, wood=5, stone=5, coal=2, iron=2, sapling=2, torches=3, books=1)
    s = s.replace(achievements=s.achievements.at[::3].set(True))  # some already unlocked
    rng = np.random.default_rng(0)
    for t in range(60):
        key, action = jax.random.PRNGKey(t), jnp.int32(rng.integers(len(Action)))
        _, want, want_r, _, _ = plain(key, s, action)
        _, got, got_r, _, _, _ = world.step(key, s, action)
        same = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), want, got)
        assert all(jax.tree_util.tree_leaves(same)), (t, int(action))
        assert float(got_r) == float(want_r), (t, int(action))
        s = got
