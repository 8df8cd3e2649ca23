"""Segments, the replay and relabeled windows: the bookkeeping that lets late relabels be trained on."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from oir.events import COUNTER_INDEX, NUM_EVENTS, NUM_LEVELS
from oir.narrate import NUM_NEARBY
from oir.segments import (
    Chunk,
    RelabelBatch,
    RelabelPool,
    SegmentTracker,
    relabel_windows,
    replay_init,
    replay_write,
)

N, H = 3, 16
FRESH = np.full(NUM_LEVELS, 9, np.int8)


def chunk(t_len: int, step0: int, done: dict[tuple[int, int], bool], task: int = 5) -> Chunk:
    """Steps ``step0..step0+t_len-1`` of N envs; event ``collect_wood`` count = step index, so
    every step is recognisable; ``done[(t, env)] = world_done`` ends a segment there."""
    events = np.zeros((t_len, N, NUM_EVENTS), np.int8)
    levels = np.zeros((t_len, N, NUM_LEVELS), np.int8)
    nearby = np.zeros((t_len, N, NUM_NEARBY), bool)
    for t in range(t_len):
        events[t, :, COUNTER_INDEX["collect_wood"]] = (step0 + t) % 100
        levels[t, :, 0] = step0 + t
        nearby[t, :, (step0 + t) % NUM_NEARBY] = True
    task_done = np.zeros((t_len, N), bool)
    world_done = np.zeros((t_len, N), bool)
    for (t, i), world in done.items():
        task_done[t, i] = True
        world_done[t, i] = world
    success = task_done & ~world_done
    return Chunk(np.full((t_len, N), task, np.int32), task_done, success, world_done, events, levels, nearby)


def test_tracker_cuts_segments_across_chunks_with_the_right_start_state():
    tr = SegmentTracker(N, H, FRESH, np.zeros((N, NUM_NEARBY), bool))
    assert tr.push(chunk(4, 0, {(1, 0): False})) != []
    out = tr.push(chunk(4, 4, {(2, 0): True, (3, 1): False}))
    by_env = {(s.env, s.start): s for s in out}
    # env 0: steps 2..6 (after its first segment ended at step 1), the world ended at step 6
    s = by_env[0, 2]
    assert s.end == 6 and s.segment.length == 5 and s.segment.ended and not s.success
    assert list(s.segment.events[:, COUNTER_INDEX["collect_wood"]]) == [2, 3, 4, 5, 6]
    assert s.segment.levels[0, 0] == 1  # the state after step 1, where the segment began
    assert list(s.segment.levels[1:, 0]) == [2, 3, 4, 5, 6]
    assert s.segment.nearby[0, 1 % NUM_NEARBY] and s.segment.nearby[-1, 6 % NUM_NEARBY]
    # env 1: its first segment, steps 0..7
    s = by_env[1, 0]
    assert s.end == 7 and s.success and s.task == 5 and (s.segment.levels[0] == FRESH).all()
    # after a world end the next segment starts from a fresh world's levels
    nxt = tr.push(chunk(4, 8, {(0, 0): False}))
    assert nxt[0].start == 7 and (nxt[0].segment.levels[0] == FRESH).all()


def test_pool_samples_only_windows_still_in_the_replay():
    pool = RelabelPool(capacity=8, history=H, window=4)
    pool.add(env=0, start=0, end=2, task=1)  # window 0..2: gone once now > 16
    pool.add(env=1, start=10, end=20, task=2)  # window 17..20
    rng = np.random.default_rng(0)
    batch, live = pool.sample(rng, 4, now=24)
    assert live == 1 and batch["valid"].tolist() == [True, False, False, False]
    assert (batch["env"][0], batch["end"][0], batch["task"][0]) == (1, 20, 2)
    batch, live = pool.sample(rng, 4, now=16)
    assert live == 2 and batch["valid"].sum() == 2


def test_relabel_windows_end_at_the_success_step_and_mask_steps_before_the_segment():
    replay = replay_init(H, N, 2)
    # obs[:, env, 0] = per-env step index, written in two rollouts of 8 steps
    for step0 in (0, 8):
        obs = jnp.broadcast_to(jnp.arange(step0, step0 + 8, dtype=jnp.float32)[:, None, None], (8, N, 2))
        replay = replay_write(replay, jnp.asarray(step0), obs, jnp.full((8, N), step0 // 8 + 3))
    rb = RelabelBatch(env=jnp.array([2, 0]), start=jnp.array([7, 0]), end=jnp.array([9, 3]),
                      task=jnp.array([4, 4]), valid=jnp.array([True, False]))
    obs, action, reward, done, mask = relabel_windows(replay, rb, 4)
    assert obs[:, 0, 0].tolist() == [6, 7, 8, 9]
    assert action[:, 0].tolist() == [3, 3, 4, 4]  # steps 6, 7 from the first rollout
    assert reward[:, 0].tolist() == [0, 0, 0, 1] and done[:, 0].tolist() == [False, False, False, True]
    assert mask[:, 0].tolist() == [False, True, True, True]  # step 6 belongs to the instruction before
    assert not mask[:, 1].any()  # padding
