"""Segments, the replay and relabeled windows: the bookkeeping that lets late relabels be trained on."""

from __future__ import annotations

import threading

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oir.events import COUNTER_INDEX, NUM_EVENTS, NUM_LEVELS
from oir.narrate import NUM_NEARBY
from oir.relabel import NarratorRelabeler
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
    assert len(tr.push(chunk(4, 0, {(1, 0): False}))) == 1
    out = tr.push(chunk(4, 4, {(2, 0): True, (3, 1): False})).infos()
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
    nxt = tr.push(chunk(4, 8, {(0, 0): False})).infos()
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


def test_windows_of_a_row_whose_embedding_is_not_on_the_device_wait_in_the_pool():
    pool = RelabelPool(capacity=8, history=H, window=4)
    pool.add(env=0, start=10, end=20, task=1)
    pool.add(env=1, start=10, end=20, task=2)  # row 2: added since the last sync
    ready = np.array([True, True, False])
    rng = np.random.default_rng(0)
    batch, live = pool.sample(rng, 4, now=24, ready=ready)
    assert live == 1 and batch["valid"].sum() == 1 and batch["task"][0] == 1
    assert pool.used_count == 1 and pool.expired_unused == 0  # waiting, not drawn and not expired
    ready[2] = True
    batch, live = pool.sample(rng, 4, now=24, ready=ready)
    assert live == 2 and sorted(batch["task"][batch["valid"]].tolist()) == [1, 2] and pool.used_count == 2


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


def test_relabel_used_frac_counts_what_was_trained_on_before_it_expired():
    pool = RelabelPool(capacity=4, history=H, window=4)
    rng = np.random.default_rng(0)
    assert pool.used_frac is None  # nothing settled yet
    for env, end in ((0, 5), (1, 6), (2, 7)):
        pool.add(env=env, start=0, end=end, task=1)
    batch, _ = pool.sample(rng, 2, now=8)  # two of the three are trained on
    assert batch["valid"].sum() == 2 and pool.used_count == 2
    assert pool.used_frac == 1.0  # the third is still live: its fate is open
    pool.sample(rng, 2, now=8)  # sampling again: still two distinct used at most three
    assert pool.used_count == 3 and pool.expired_unused == 0
    pool.add(env=0, start=0, end=9, task=1)
    pool.add(env=1, start=0, end=30, task=1)  # the pool is full: the oldest (used) one is overwritten
    assert pool.expired_unused == 0
    pool.sample(np.random.default_rng(1), 0, now=40)  # a batch of 0: steps before 24 have left the replay
    assert pool.expired_unused == 1  # end=9, never trained on
    assert pool.used_frac == 3 / 4


def test_a_pool_pickled_with_a_retired_sampling_loads_and_draws_uniformly():
    pool = RelabelPool(capacity=8, history=H, window=4)
    pool.add(env=0, start=10, end=20, task=1)
    state = dict(pool.__dict__, sampling="rare-first", rare_drawn=3)  # an older checkpoint's pool
    old = RelabelPool.__new__(RelabelPool)
    old.__setstate__(state)
    assert not hasattr(old, "sampling") and not hasattr(old, "rare_drawn")
    batch, live = old.sample(np.random.default_rng(0), 2, now=24)
    assert live == 1 and batch["valid"].tolist() == [True, False]


def test_long_windows_are_masked_at_segment_starts():
    """A 24-step window over a ring of 32 steps: everything before the segment's start is masked,
    also when the window reaches back across the ring's wrap."""
    h, w = 32, 24
    replay = replay_init(h, N, 1)
    for step0 in range(0, 48, 8):  # 48 steps written: rows wrap once
        obs = jnp.broadcast_to(jnp.arange(step0, step0 + 8, dtype=jnp.float32)[:, None, None], (8, N, 1))
        replay = replay_write(replay, jnp.asarray(step0), obs, jnp.zeros((8, N), jnp.int32))
    rb = RelabelBatch(env=jnp.array([0, 1]), start=jnp.array([30, 10]), end=jnp.array([40, 47]),
                      task=jnp.array([1, 1]), valid=jnp.array([True, True]))
    obs, _action, reward, done, mask = relabel_windows(replay, rb, w)
    assert obs[:, 0, 0].tolist() == list(range(17, 41))  # steps 17..40, across the wrap at 32
    assert mask[:, 0].tolist() == [s >= 30 for s in range(17, 41)]  # 13 steps before the segment masked
    assert obs[:, 1, 0].tolist() == list(range(24, 48)) and mask[:, 1].all()  # a 38-step segment fills it
    assert reward[:, 0].tolist() == [0.0] * 23 + [1.0] and done[-1].all() and not done[:-1].any()


def _reference_cut(tr_state: dict, chunk: Chunk) -> list[tuple]:
    """The segment cutter as a plain loop over every ended segment (what the vectorized one replaced)."""
    h, step = tr_state["h"], tr_state["step"]
    t_len = chunk.task_done.shape[0]
    for t in range(t_len):
        r = (step + t) % h
        tr_state["events"][r], tr_state["levels"][r], tr_state["nearby"][r] = chunk.events[t], chunk.levels[t], chunk.nearby[t]
    new = chunk.world_done if chunk.world_new is None else chunk.world_new
    out = []
    for t in range(t_len):
        for i in range(chunk.task_done.shape[1]):
            if not chunk.task_done[t, i]:
                continue
            g, s = step + t, max(int(tr_state["start"][i]), step + t - h + 1)
            idx = np.arange(s, g + 1) % h
            out.append((i, s, int(chunk.task[t, i]), bool(chunk.success[t, i]), bool(chunk.world_done[t, i]),
                        tr_state["events"][idx, i].copy(),
                        np.concatenate([tr_state["start_levels"][i][None], tr_state["levels"][idx, i]]),
                        np.concatenate([tr_state["start_nearby"][i][None], tr_state["nearby"][idx, i]])))
            tr_state["start"][i] = g + 1
            tr_state["start_levels"][i] = FRESH if new[t, i] else chunk.levels[t, i]
            tr_state["start_nearby"][i] = chunk.nearby[t, i]
    tr_state["step"] += t_len
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.floats(0.0, 0.6), st.integers(4, 12))
def test_vectorized_cutter_gives_exactly_the_segments_of_a_plain_loop(seed, n_chunks, p_done, t_len):
    rng = np.random.default_rng(seed)
    n, h = 5, 64
    nearby0 = rng.random((n, NUM_NEARBY)) < 0.3
    tr = SegmentTracker(n, h, FRESH, nearby0)
    ref = {"h": h, "step": 0, "start": np.zeros(n, np.int64), "start_levels": np.tile(FRESH, (n, 1)),
           "start_nearby": nearby0.copy(), "events": np.zeros((h, n, NUM_EVENTS), np.int8),
           "levels": np.zeros((h, n, NUM_LEVELS), np.int8), "nearby": np.zeros((h, n, NUM_NEARBY), bool)}
    for _ in range(n_chunks):
        done = rng.random((t_len, n)) < p_done
        world_done = done & (rng.random((t_len, n)) < 0.3)
        world_new = world_done | (done & (rng.random((t_len, n)) < 0.2))
        c = Chunk(rng.integers(0, 50, (t_len, n)).astype(np.int32), done, done & ~world_done & (rng.random((t_len, n)) < 0.5),
                  world_done, rng.integers(0, 3, (t_len, n, NUM_EVENTS)).astype(np.int8),
                  rng.integers(0, 10, (t_len, n, NUM_LEVELS)).astype(np.int8), rng.random((t_len, n, NUM_NEARBY)) < 0.3,
                  world_new if rng.random() < 0.7 else None)
        got, want = tr.push(c), _reference_cut(ref, c)
        assert len(got) == len(want)
        for k, (env, start, task, success, ended, events, levels, nearby) in enumerate(want):
            seg = got.segment(k)
            assert (got.env[k], got.start[k], got.task[k], got.success[k], got.ended[k]) == (env, start, task, success, ended)
            assert np.array_equal(seg.events, events) and np.array_equal(seg.levels, levels)
            assert np.array_equal(seg.nearby, nearby) and seg.ended == ended
        sub = got.select(got.eventful(3))  # a selection keeps each chosen segment whole
        for j, k in enumerate(np.flatnonzero(got.eventful(3))):
            assert np.array_equal(sub.segment(j).levels, got.segment(k).levels)
            assert np.array_equal(sub.segment(j).events, got.segment(k).events) and sub.segment(j).events[:, :3].any()


class _Gated(NarratorRelabeler):
    """The narrator, answering only once ``gate`` is set: a slow relabeler."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def propose_batch(self, segments):
        self.gate.wait(30)
        return super().propose_batch(segments)


LATE_DIM, LATE_W, LATE_H = 1345, 8, 16


def _steps_chunk(step0: int, done: dict) -> Chunk:
    """``chunk`` with wood collected at steps 2, 6, ..., obs = (step index, env), action = step % 17."""
    c = chunk(4, step0, done, task=0)  # free play: the only row a fresh buffer has
    events = np.zeros_like(c.events)
    events[:, :, COUNTER_INDEX["collect_wood"]] = (c.levels[:, :, 0] % 4 == 2)
    obs = np.zeros((4, N, LATE_DIM), np.float16)
    obs[:, :, 0] = np.arange(step0, step0 + 4)[:, None]
    obs[:, :, 1] = np.arange(N)[None, :]
    return c.replace(events=events, obs=obs, action=(np.arange(step0, step0 + 4)[:, None] % 17 + 0 * obs[:, :, 0]).astype(np.int8))


def _late_run(late_mb: float, ends: dict):
    """Segments ending at step 5 (``ends``: ``{(1, env): False}``), answered 40 steps later by a
    slow relabeler, with a replay of 16 steps."""
    from types import SimpleNamespace

    from oir.encode import make_encoder
    from oir.hindsight import Hindsight, RelabelingConfig

    relabeler = _Gated()
    cfg = RelabelingConfig(history=LATE_H, window=LATE_W, batch=8, capacity=64, late_store_mb=late_mb)
    hs = Hindsight(cfg, relabeler, make_encoder("hash", cache=None), num_envs=N)
    hs.start(SimpleNamespace(obs=np.zeros((N, LATE_DIM), np.float32)), FRESH, late_mb=late_mb)
    hs.observe(_steps_chunk(0, {}), 4)
    hs.observe(_steps_chunk(4, ends), 8)
    for step0 in range(8, 48, 4):  # 40 more steps: the replay (16) has overwritten them
        hs.observe(_steps_chunk(step0, {}), step0 + 4)
    relabeler.gate.set()
    hs.worker.flush()
    hs.observe(_steps_chunk(48, {}), 52)  # takes the relabels
    hs.worker.close()
    return hs


def test_a_relabel_that_comes_after_its_steps_left_the_replay_still_becomes_the_right_window():
    """A slow relabeler answers 40 steps after the segment ended, with a replay of 16 steps: the
    late-window store still gives each relabel its window (obs and actions of the steps up to its
    success step, reward there, steps before the segment masked); without the store it expires."""
    w = LATE_W
    hs = _late_run(4.0, {(1, 0): False})  # env 0's segment: steps 0..5, wood at 2
    m = hs.metrics(1.0)
    assert m["relabel_verified"] > 0 and m["relabels_expired"] == 0
    assert m["relabel_windows_late"] == m["relabel_windows_added"] > 0
    assert not hs.next_batch(12, 4).valid.any()  # the rows' embeddings are not on the device yet
    hs._mirror_new()  # what the next sync does before it uploads them
    rb = hs.next_batch(12, 4)
    assert rb.late is not None and bool(rb.late.all())  # only late windows live: the replay's are gone
    replay = replay_init(LATE_H, N, LATE_DIM)  # zeros: every value below comes from the host's store
    obs, action, reward, done, mask = (np.asarray(x) for x in relabel_windows(replay, rb, w))
    for j in range(rb.late.shape[0]):
        live = np.flatnonzero(mask[:, j])
        steps = obs[live, j, 0].astype(int)
        assert live[-1] == w - 1 and reward[w - 1, j] == 1 and done[w - 1, j] and reward[:, j].sum() == 1
        assert steps.tolist() == list(range(steps[-1] - len(live) + 1, steps[-1] + 1))  # consecutive steps
        assert steps[0] == max(0, steps[-1] - w + 1) and steps[-1] <= 5  # from the segment's start, in it
        assert (obs[live, j, 1] == 0).all() and (action[live, j] == steps % 17).all()  # env 0's steps and actions
        assert not mask[: w - len(live), j].any()  # before the segment: masked
    assert {int(obs[w - 1, j, 0]) for j in range(rb.late.shape[0])} >= {2}  # "collect wood" ends at step 2

    hs = _late_run(0.0, {(1, 0): False})  # no store: the same relabels expire
    m = hs.metrics(1.0)
    assert m["relabel_verified"] > 0 and m["relabels_expired"] > 0 and m["relabel_windows_added"] == 0


def test_a_full_late_store_refuses_new_segments_instead_of_evicting_the_ones_the_relabeler_answers_next():
    """Two segments end together and the store holds the steps of one (6 steps x 2,691 bytes; its
    half of 0.042 MB is 22,512 bytes): the first is handed to the slow relabeler and becomes
    windows, the second is never handed over. Evicting the first to keep the second, as the store
    once did, expired the relabels of the segment the relabeler answered first."""
    hs = _late_run(0.042, {(1, 0): False, (1, 1): False})
    m = hs.metrics(1.0)
    assert m["relabel_late_segments_refused"] == 1 and m["relabel_late_segments_evicted"] == 0
    assert m["relabel_verified"] > 0 and m["relabels_expired"] == 0
    assert m["relabel_windows_late"] == m["relabel_windows_added"] > 0


def test_late_windows_pickle_only_what_they_hold():
    import pickle

    from oir.segments import LateWindows

    lw = LateWindows(mb=8, window=4, obs_dim=100)
    obs, action = np.arange(600, dtype=np.float16).reshape(6, 100), np.arange(6, dtype=np.int8)
    lw.keep((0, 0), obs, action)
    lw.add(lw.take((0, 0)), step=3, task=7)
    blob = pickle.dumps(lw)
    assert len(blob) < 20_000 < lw.obs.nbytes
    back = pickle.loads(blob)
    assert back.obs.shape == lw.obs.shape and back.size == 1 and back.task[0] == 7 and back.first[0] == 1
    assert (back.obs[0, 1:] == obs[:3]).all() and (back.action[0, 1:] == action[:3]).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.floats(0.0, 0.6), st.integers(4, 12), st.sampled_from([5, 20, 52]))
def test_world_spans_reach_back_to_the_worlds_first_step_and_no_further(seed, n_chunks, p_done, t_len, span):
    """With a world span, each segment is its world's steps up to its instruction's end (at most
    ``span`` of them, never fewer than its own), from the state before the first of them (a fresh
    world's levels at a world start), and ``after`` counts the steps of earlier instructions.
    Checked against every env's whole history, kept in plain lists."""
    rng = np.random.default_rng(seed)
    n, h = 5, 64
    nearby0 = rng.random((n, NUM_NEARBY)) < 0.3
    tr = SegmentTracker(n, h, FRESH, nearby0, span=span)
    events, levels, nearby = [], [], []  # per step: [n, ...] after it
    world = np.zeros(n, np.int64)  # each env's world's first step
    own = np.zeros(n, np.int64)  # each env's instruction's first step
    for _ in range(n_chunks):
        done = rng.random((t_len, n)) < p_done
        world_done = done & (rng.random((t_len, n)) < 0.3)
        world_new = world_done | (done & (rng.random((t_len, n)) < 0.2))
        c = Chunk(rng.integers(0, 50, (t_len, n)).astype(np.int32), done, done & ~world_done,
                  world_done, rng.integers(0, 3, (t_len, n, NUM_EVENTS)).astype(np.int8),
                  rng.integers(0, 10, (t_len, n, NUM_LEVELS)).astype(np.int8), rng.random((t_len, n, NUM_NEARBY)) < 0.3,
                  world_new)
        got = tr.push(c)
        want = []
        for t in range(t_len):
            events.append(c.events[t]), levels.append(c.levels[t]), nearby.append(c.nearby[t])
            g = len(events) - 1
            for i in np.flatnonzero(done[t]):
                s = min(own[i], max(world[i], g - span + 1))
                lv0 = FRESH if s == world[i] else levels[s - 1][i]
                nb0 = nearby0[i] if s == 0 else nearby[s - 1][i]
                want.append((i, s, own[i] - s, np.stack([e[i] for e in events[s:]]),
                             np.stack([lv0, *(x[i] for x in levels[s:])]), np.stack([nb0, *(x[i] for x in nearby[s:])])))
                own[i] = g + 1
            world[world_new[t]] = g + 1
        assert len(got) == len(want)
        for k, (env, start, after, ev, lv, nb) in enumerate(want):
            seg = got.segment(k)
            assert (got.env[k], got.start[k], got.after[k], seg.after) == (env, start, after, after)
            assert np.array_equal(seg.events, ev) and np.array_equal(seg.levels, lv) and np.array_equal(seg.nearby, nb)
        sub = got.select(got.eventful(3))  # eventful: something to state after the earlier instructions
        for j, k in enumerate(np.flatnonzero(got.eventful(3))):
            assert sub.segment(j).after == got.after[k] and sub.segment(j).events[got.after[k]:, :3].any()
        assert not any(got.segment(k).events[got.after[k]:, :3].any() for k in np.flatnonzero(~got.eventful(3)))
