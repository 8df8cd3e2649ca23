"""The task env: optimistic resets, instruction switching, counters relative to the switch."""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from craftax.craftax_classic.constants import Action, BlockType
from scenes import T, scene

from oir.env import TaskEnv, VecEnv
from oir.events import COUNTER_INDEX
from oir.learn import WorldRefill
from oir.tasks import TaskBank, parse_spec

N = 4
NEVER = parse_spec({"all": [{"counter": "collect_diamond", "at_least": 9}]})
AT_ONCE = parse_spec({"all": [{"counter": "health", "at_least": 0}]})  # holds after any step
TWO_WOOD = parse_spec({"all": [{"counter": "collect_wood", "at_least": 2}]})
WOOD = COUNTER_INDEX["collect_wood"]


@pytest.fixture(scope="module")
def task_env():
    env = TaskEnv(VecEnv(N, reset_pool=2), max_task_steps=50)
    return env, env.reset, jax.jit(env.step)


def edit_env(state, i, fn):
    """Apply ``fn`` to env ``i``'s craftax state inside a batched TaskState."""
    one = jax.tree.map(lambda x: x[i], state.vec.env)
    new = fn(one)
    env = jax.tree.map(lambda b, x: b.at[i].set(x), state.vec.env, new)
    return state.replace(vec=state.vec.replace(env=env))


def regrow(state):
    """The faced cell of every env back to a tree (collecting wood turned it to grass)."""
    return state.replace(vec=state.vec.replace(env=state.vec.env.replace(
        map=state.vec.env.map.at[:, T[0], T[1]].set(BlockType.TREE.value))))


def act(action: Action):
    return jnp.full((N,), action.value, jnp.int32)


def test_done_env_gets_fresh_world_and_restarts_task(task_env):
    _env, reset, step = task_env
    _, s = reset(jax.random.PRNGKey(0), TaskBank.from_specs([NEVER]))
    _, s, out = step(jax.random.PRNGKey(1), s, act(Action.NOOP))
    assert not bool(out.world.done.any())
    s = s.replace(progress=s.progress.replace(counts=s.progress.counts.at[1, WOOD].set(5)))
    s = edit_env(s, 1, lambda e: e.replace(player_health=jnp.asarray(0, jnp.int32)))
    pool_world = np.asarray(s.vec.pool.map[int(s.vec.pool_next)])
    _, s2, out = step(jax.random.PRNGKey(2), s, act(Action.NOOP))

    done = np.asarray(out.world.done)
    assert done.tolist() == [False, True, False, False]
    assert bool(out.task_done[1]) and not bool(out.success[1])
    assert int(out.world.episode_length[1]) == 2 and int(out.world.episode_length[0]) == 0
    timestep = np.asarray(s2.vec.env.timestep)
    assert timestep[1] == 0 and (timestep[[0, 2, 3]] == 2).all()
    assert int(s2.vec.env.player_health[1]) == 9
    np.testing.assert_array_equal(np.asarray(s2.vec.env.map[1]), pool_world)
    assert int(s2.progress.t[1]) == 0 and int(s2.progress.counts[1].sum()) == 0
    assert (np.asarray(s2.progress.t)[[0, 2, 3]] == 2).all()


def kill(s, envs):
    return functools.reduce(
        lambda s, i: edit_env(s, i, lambda e: e.replace(player_health=jnp.asarray(0, jnp.int32))), envs, s)


def test_simultaneous_deaths_get_distinct_worlds_and_the_host_refills_their_slots(task_env):
    env, reset, step = task_env  # a ring of 2 worlds
    _, s = reset(jax.random.PRNGKey(3), TaskBank.from_specs([NEVER]))
    old_pool = np.asarray(s.vec.pool.map)
    _, s2, out = step(jax.random.PRNGKey(4), kill(s, [0, 2]), act(Action.NOOP))
    assert np.asarray(out.world.done).tolist() == [True, False, True, False]
    maps = np.asarray(s2.vec.env.map)
    assert not np.array_equal(maps[0], maps[2])
    np.testing.assert_array_equal(maps[[0, 2]], old_pool)  # the ring's two worlds, in order
    assert (int(s2.vec.pool_next), int(s2.vec.pool_end), int(s2.vec.pool_reused)) == (2, 2, 0)
    s3 = env.refill(jax.random.PRNGKey(5), s2, 2, 2)  # positions 2 and 3: both slots, fresh
    assert int(s3.vec.pool_end) == 4
    new = np.asarray(s3.vec.pool.map)
    assert not any(np.array_equal(new[i], old_pool[j]) for i in range(2) for j in range(2))
    with pytest.raises(ValueError, match="0 to 2 worlds"):
        env.refill(jax.random.PRNGKey(5), s3, 4, 3)


def test_a_ring_run_dry_hands_worlds_out_again_and_counts_them(task_env):
    _env, reset, step = task_env
    _, s = reset(jax.random.PRNGKey(11), TaskBank.from_specs([NEVER]))
    _, s, _ = step(jax.random.PRNGKey(12), kill(s, [0]), act(Action.NOOP))  # position 0
    _, s, out = step(jax.random.PRNGKey(13), kill(s, [1, 2]), act(Action.NOOP))  # 1, then 2: slot 0 again
    assert np.asarray(out.world.done).tolist() == [False, True, True, False]
    assert (int(s.vec.pool_next), int(s.vec.pool_reused)) == (3, 1)


def test_world_refill_between_rollouts_never_hands_a_world_out_twice(task_env, caplog):
    env, reset, step = task_env
    _, s = reset(jax.random.PRNGKey(20), TaskBank.from_specs([NEVER]))
    refill = WorldRefill(env, jax.random.PRNGKey(21), s)  # compiles the ring's write: no refill does
    seen = []
    caplog.set_level(logging.WARNING)
    with jax.log_compiles(True):
        for t in range(6):  # a "rollout" of one step with two deaths, as the learner's loop would run it
            _, s, out = step(jax.random.PRNGKey(30 + t), kill(s, [t % N, (t + 1) % N]), act(Action.NOOP))
            assert bool(out.world.done.sum() == 2)
            seen += [np.asarray(s.vec.env.map[i]) for i in np.flatnonzero(np.asarray(out.world.done))]
            refill.observe(s.vec.pool_next)
            s = refill(s)
    assert not [r for r in caplog.records if r.getMessage().startswith("Compiling jit(_write_chunk)")]
    assert int(s.vec.pool_reused) == 0 and int(s.vec.pool_next) == 12
    assert not any(np.array_equal(seen[i], seen[j]) for i in range(len(seen)) for j in range(i))


def test_instruction_switch_keeps_world_and_counts_from_the_switch(task_env):
    _env, reset, step = task_env
    bank = TaskBank.from_specs([AT_ONCE, TWO_WOOD])
    _, s = reset(jax.random.PRNGKey(5), bank, jnp.array([1.0, 0.0]))
    assert np.asarray(s.task).tolist() == [0] * N
    s = s.replace(cdf=TaskEnv.weights_cdf(jnp.array([0.0, 1.0])))  # from now on, only TWO_WOOD
    for i in range(N):
        s = edit_env(s, i, lambda e: scene(e, target=BlockType.TREE))

    # Step 1: wood is collected while AT_ONCE succeeds; it must not count for the next task.
    _, s, out = step(jax.random.PRNGKey(6), s, act(Action.DO))
    assert bool(out.success.all()) and np.asarray(out.reward).tolist() == [1.0] * N
    assert int(out.world.events[:, WOOD].sum()) == N
    assert np.asarray(out.world.unlocked.sum(-1)).tolist() == [1] * N  # the episode's first wood...
    assert bool(out.world.unlocked[:, WOOD].all())  # ...and nothing else
    assert np.asarray(s.task).tolist() == [1] * N
    assert np.asarray(s.vec.env.timestep).tolist() == [1] * N  # same world, not reset
    assert int(s.progress.counts.sum()) == 0 and int(s.progress.t.sum()) == 0

    _, s, out = step(jax.random.PRNGKey(7), regrow(s), act(Action.DO))
    assert not bool(out.task_done.any()) and np.asarray(s.progress.counts[:, WOOD]).tolist() == [1] * N
    assert int(out.world.unlocked.sum()) == 0  # wood again: not a new achievement
    _, s, out = step(jax.random.PRNGKey(8), regrow(s), act(Action.DO))
    assert bool(out.success.all()) and np.asarray(out.task_steps).tolist() == [2] * N


def test_task_timeout_restarts_instruction(task_env):
    env, reset, step = task_env
    _, s = reset(jax.random.PRNGKey(9), TaskBank.from_specs([NEVER]))
    s = s.replace(progress=s.progress.replace(t=jnp.full((N,), env.max_task_steps - 1, jnp.int32)))
    _, s, out = step(jax.random.PRNGKey(10), s, act(Action.NOOP))
    assert bool(out.timeout.all()) and bool(out.task_done.all()) and not bool(out.world.done.any())
    assert int(s.progress.t.sum()) == 0


def test_sampling_follows_weights(task_env):
    env, _, _ = task_env
    cdf = TaskEnv.weights_cdf(jnp.array([0.0, 3.0, 0.0, 1.0]))
    draws = np.concatenate([np.asarray(env._sample(jax.random.PRNGKey(i), cdf)) for i in range(500)])
    assert set(np.unique(draws)) == {1, 3}
    assert 0.70 < (draws == 1).mean() < 0.80


@pytest.fixture(scope="module")
def bonus_env():
    # The achievement bonus (count-based, K = 1), off in a plain TaskEnv.
    env = TaskEnv(VecEnv(N, reset_pool=2), max_task_steps=3, achievement_bonus=0.5, achievement_bonus_counts=1)
    return env, env.reset, jax.jit(env.step)


def test_achievement_bonus_options_are_checked():
    with pytest.raises(ValueError, match="achievement_bonus"):
        TaskEnv(VecEnv(N), achievement_bonus=-1.0)
    with pytest.raises(ValueError, match="achievement_bonus_counts"):
        TaskEnv(VecEnv(N), achievement_bonus=0.5, achievement_bonus_counts=-1)


def test_achievement_bonus_pays_first_unlocks_only_and_is_never_a_success(bonus_env):
    _env, reset, step = bonus_env
    _, s = reset(jax.random.PRNGKey(20), TaskBank.from_specs([NEVER]))
    for i in range(N):
        s = edit_env(s, i, lambda e: scene(e, target=BlockType.TREE))
    _, s, out = step(jax.random.PRNGKey(21), s, act(Action.DO))  # the episode's first wood
    assert np.asarray(out.reward).tolist() == [0.5] * N and not np.asarray(out.success).any()
    _, s, out = step(jax.random.PRNGKey(22), regrow(s), act(Action.DO))  # wood again: no bonus
    assert int(out.world.events[:, WOOD].sum()) == N and np.asarray(out.reward).tolist() == [0.0] * N


def test_count_based_bonus_falls_with_the_runs_unlocks_of_that_achievement(bonus_env):
    _env, reset, step = bonus_env
    _, s = reset(jax.random.PRNGKey(25), TaskBank.from_specs([NEVER]))
    assert np.asarray(s.unlocks).sum() == 0  # a new run has found nothing
    for i in range(N):
        s = edit_env(s, i, lambda e: scene(e, target=BlockType.TREE))
    # Wood got 4 times before in this run, stone never: with K = 1 wood pays 0.5 * sqrt(1 / 4).
    s = s.replace(unlocks=s.unlocks.at[WOOD].set(4.0).at[COUNTER_INDEX["collect_stone"]].set(0.0))
    _, s, out = step(jax.random.PRNGKey(26), s, act(Action.DO))
    assert np.asarray(out.reward).tolist() == [0.25] * N and not np.asarray(out.success).any()
    assert float(s.unlocks[WOOD]) == 4.0 + N and float(s.unlocks.sum()) == 4.0 + N  # every env's unlock counted
