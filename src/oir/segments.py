"""Segments: each env's experience under one instruction, and the replay that keeps it trainable.

A *segment* is one env's stretch of experience from the moment an instruction was given to the
moment it ended (success, failure, timeout or the world's end). Relabeling is asynchronous, so a
segment's relabels arrive some updates after it ended; two structures keep what they need:

* :class:`Replay` (device): a ring of the last ``history`` steps of every env's observation and
  action. A relabel names an env and the step its spec first held; the learner cuts a window of
  ``window`` steps ending there out of the ring and trains on it with reward 1 at its end.
  Windows whose steps have left the ring are dropped (counted as expired).
* :class:`SegmentTracker` (host): a ring of the same steps' events, levels and surroundings,
  cut into :class:`~oir.narrate.Segment` objects for the narrator and relabelers when each
  env's instruction ends. With a *world span* a segment reaches back over the instructions
  before it in the same world, so counts and orders reached across instructions can be stated;
  only statements that first hold within the ending instruction's own steps are kept
  (``Segment.after``), so nothing is stated twice.

Step indices are per env: step ``g`` of every env is the ``g``-th env step since training began;
its row in both rings is ``g % history``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from oir import worlds
from oir.narrate import Segment
from oir.worlds import World


@struct.dataclass
class Replay:
    """Device ring of recent steps: ``obs[g % H, env]`` was seen before action ``action[g % H, env]``."""

    obs: jax.Array  # float16[H, N, obs_dim]: symbolic obs are tenths, exact enough in half precision
    action: jax.Array  # int32[H, N]


def replay_init(history: int, num_envs: int, obs_dim: int) -> Replay:
    return Replay(jnp.zeros((history, num_envs, obs_dim), jnp.float16), jnp.zeros((history, num_envs), jnp.int32))


def replay_write(replay: Replay, step: jax.Array, obs: jax.Array, action: jax.Array) -> Replay:
    """Write a ``[T, N]`` rollout that began at per-env step ``step`` (``history`` divides by T)."""
    row = step % replay.obs.shape[0]
    return Replay(
        jax.lax.dynamic_update_slice(replay.obs, obs.astype(jnp.float16), (row, 0, 0)),
        jax.lax.dynamic_update_slice(replay.action, action.astype(jnp.int32), (row, 0)),
    )


@struct.dataclass
class RelabelBatch:
    """``B`` relabeled windows to train on: env ``env`` from ``start`` to the success step ``end``."""

    env: jax.Array  # int32[B]
    start: jax.Array  # int32[B]: the segment's first step (steps before it belong to another instruction)
    end: jax.Array  # int32[B]: the step at which the relabel's spec first held: reward 1, terminal
    task: jax.Array  # int32[B]: the relabel's instruction (bank row, for its text embedding)
    valid: jax.Array  # bool[B]: padding rows are False
    # With a late-window store (--relabeling.late-store-mb): windows whose steps come from the host
    # (``late`` rows) rather than the replay, because they had left it when their relabel came.
    obs: jax.Array | None = None  # float16[L, B, obs_dim]
    action: jax.Array | None = None  # int32[L, B]
    late: jax.Array | None = None  # bool[B]


def relabel_windows(replay: Replay, rb: RelabelBatch, window: int):
    """``[window, B]`` obs, actions, rewards, dones and loss mask for a batch of relabels."""
    steps = rb.end[None, :] - window + 1 + jnp.arange(window)[:, None]  # [L, B]
    rows = steps % replay.obs.shape[0]
    obs = replay.obs[rows, rb.env[None, :]].astype(jnp.float32)
    action = replay.action[rows, rb.env[None, :]]
    if rb.late is not None:
        obs = jnp.where(rb.late[None, :, None], rb.obs.astype(jnp.float32), obs)
        action = jnp.where(rb.late[None, :], rb.action, action)
    last = steps == rb.end[None, :]
    mask = (steps >= rb.start[None, :]) & rb.valid[None, :]
    return obs, action, last.astype(jnp.float32), last, mask


@struct.dataclass
class Chunk:
    """What the host needs of a ``[T, N]`` rollout to cut segments (compact dtypes for transfer)."""

    task: jax.Array  # int32[T, N]: the instruction followed at each step
    task_done: jax.Array  # bool[T, N]
    success: jax.Array  # bool[T, N]
    world_done: jax.Array  # bool[T, N]
    events: jax.Array  # int8[T, N, num_events] (the world's counters)
    levels: jax.Array  # int8[T, N, num_levels]: after the step (before any world reset)
    nearby: jax.Array  # bool[T, N, len(nearby_names)]: seen in the next observation
    world_new: jax.Array | None = None  # bool[T, N]: a fresh world follows (the game ended); None: world_done
    # With a late-window store only: the steps themselves, kept on the host past the replay.
    obs: jax.Array | None = None  # float16[T, N, obs_dim]: seen before each action
    action: jax.Array | None = None  # int8[T, N]


@dataclass
class SegmentInfo:
    """A finished segment and where its steps live in the replay."""

    segment: Segment
    env: int
    start: int  # per-env step index of its first step
    task: int  # the bank row it followed
    success: bool

    @property
    def end(self) -> int:
        return self.start + self.segment.length - 1


@dataclass
class SegmentBatch:
    """Finished segments as flat arrays: what the cutter makes and what crosses to a relabel process.

    Segment ``k`` has ``lengths[k]`` steps; its events are rows ``offsets[k] .. offsets[k] +
    lengths[k]`` of ``events``, and its levels and surroundings (one row more: the state before
    its first step) rows ``offsets[k] + k ..`` of ``levels`` and ``nearby``.
    """

    env: np.ndarray  # int64[K]
    start: np.ndarray  # int64[K]: per-env step index of its first step
    task: np.ndarray  # int32[K]
    success: np.ndarray  # bool[K]
    ended: np.ndarray  # bool[K]: the game ended at its last step
    lengths: np.ndarray  # int64[K]
    events: np.ndarray  # int8[sum(lengths), num_events]
    levels: np.ndarray  # int8[sum(lengths) + K, num_levels]
    nearby: np.ndarray  # bool[sum(lengths) + K, len(nearby_names)]
    obs: np.ndarray | None = None  # float16[sum(lengths), obs_dim]: with a late-window store only
    action: np.ndarray | None = None  # int8[sum(lengths)]
    # With a world span: steps at each segment's start that came before its instruction began
    # (earlier instructions' steps, already relabeled). None: 0 for every segment.
    after: np.ndarray | None = None  # int64[K]

    def __post_init__(self):
        if self.after is None:
            self.after = np.zeros(len(self.lengths), np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    @functools.cached_property
    def offsets(self) -> np.ndarray:
        """Each segment's first row in ``events`` (computed once: per-segment views ask for it)."""
        return np.cumsum(self.lengths) - self.lengths

    @property
    def end(self) -> np.ndarray:
        """int64[K]: each segment's last per-env step index (:attr:`SegmentInfo.end`)."""
        return self.start + self.lengths - 1

    @classmethod
    def empty(cls, obs_dim: int = 0, world: World | str | None = None) -> SegmentBatch:
        w = worlds.world_of(world)
        z = np.zeros(0, np.int64)
        steps = (np.zeros((0, obs_dim), np.float16), np.zeros(0, np.int8)) if obs_dim else (None, None)
        return cls(z, z, z.astype(np.int32), z.astype(bool), z.astype(bool), z,
                   np.zeros((0, w.num_events), np.int8), np.zeros((0, w.num_levels), np.int8),
                   np.zeros((0, len(w.nearby_names)), bool), *steps)

    @classmethod
    def from_segments(cls, segments: list[Segment], env=None, start=None, task=None, success=None) -> SegmentBatch:
        """Segments (saved ones, constructed ones) as a batch; the bookkeeping columns default to 0."""
        k = len(segments)
        col = lambda v, dt: np.zeros(k, dt) if v is None else np.asarray(v, dt)  # noqa: E731
        if not k:
            return cls.empty()
        return cls(col(env, np.int64), col(start, np.int64), col(task, np.int32), col(success, bool),
                   np.array([s.ended for s in segments], bool), np.array([s.length for s in segments], np.int64),
                   np.concatenate([s.events for s in segments]).astype(np.int8),
                   np.concatenate([s.levels for s in segments]).astype(np.int8),
                   np.concatenate([s.nearby for s in segments]).astype(bool),
                   after=np.array([s.after for s in segments], np.int64))

    @classmethod
    def concat(cls, batches: list[SegmentBatch]) -> SegmentBatch:
        if len(batches) == 1:
            return batches[0]
        def cat(name):
            parts = [getattr(b, name) for b in batches]
            return None if any(p is None for p in parts) else np.concatenate(parts)

        return cls(*(cat(f.name) for f in fields(cls)))

    def segment(self, k: int) -> Segment:
        e0, n = int(self.offsets[k]), int(self.lengths[k])
        return Segment(self.events[e0:e0 + n].astype(np.int32), self.levels[e0 + k:e0 + k + n + 1].astype(np.int32),
                       self.nearby[e0 + k:e0 + k + n + 1], bool(self.ended[k]), int(self.after[k]))

    def segments(self) -> list[Segment]:
        return [self.segment(k) for k in range(len(self))]

    def infos(self) -> list[SegmentInfo]:
        return [SegmentInfo(self.segment(k), int(self.env[k]), int(self.start[k]), int(self.task[k]),
                            bool(self.success[k])) for k in range(len(self))]

    def eventful(self, first: int) -> np.ndarray:
        """bool[K]: whether any of the first ``first`` events (all but the placements) happened in it
        (after its ``after`` steps: only those can be stated)."""
        hit = self.events[:, :first].any(axis=1).astype(np.int64)
        hit *= np.arange(len(hit)) - np.repeat(self.offsets, self.lengths) >= np.repeat(self.after, self.lengths)
        return np.bincount(np.repeat(np.arange(len(self)), self.lengths), hit, len(self)) > 0

    def select(self, keep) -> SegmentBatch:
        """The segments at ``keep`` (a bool mask, a slice or indices), in that order."""
        idx = np.arange(len(self))[keep]
        lengths, offs = self.lengths[idx], self.offsets[idx]
        rows = _ranges(offs, lengths)
        state_rows = _ranges(offs + idx, lengths + 1)
        steps = (None, None) if self.obs is None else (self.obs[rows], self.action[rows])
        return SegmentBatch(self.env[idx], self.start[idx], self.task[idx], self.success[idx], self.ended[idx],
                            lengths, self.events[rows], self.levels[state_rows], self.nearby[state_rows], *steps,
                            after=self.after[idx])

    def without_steps(self) -> SegmentBatch:
        """The batch without observations and actions: what relabeling reads (and processes receive)."""
        return self if self.obs is None else replace(self, obs=None, action=None)

    def steps_of(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Segment ``k``'s observations and actions (a store is on)."""
        e0, n = int(self.offsets[k]), int(self.lengths[k])
        return self.obs[e0:e0 + n], self.action[e0:e0 + n]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``range(s, s + n)`` for every (s, n), without a Python loop."""
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths
    return np.arange(total) + np.repeat(starts - first, lengths)


class SegmentTracker:
    """Cuts every env's steps into segments at instruction ends (host side, vectorized numpy).

    ``span > 0``: each segment begins at its world's first step, or ``span`` steps before its
    end if that is later (never after its instruction's first step), with ``after`` set to the
    steps before its instruction began. ``span`` + a rollout's length must not exceed ``history``.
    """

    span = 0  # checkpoints from before world spans unpickle without one

    def __init__(self, num_envs: int, history: int, fresh_levels: np.ndarray, nearby0: np.ndarray, obs_dim: int = 0,
                 span: int = 0, world: World | str | None = None):
        self.n, self.h, self.span = num_envs, history, span
        self.world = worlds.world_of(world)
        w = self.world
        # The steps themselves too (a late-window store is on): host rings like the device replay's.
        self.obs = np.zeros((history, num_envs, obs_dim), np.float16) if obs_dim else None
        self.action = np.zeros((history, num_envs), np.int8) if obs_dim else None
        self.events = np.zeros((history, num_envs, w.num_events), np.int8)
        self.levels = np.zeros((history, num_envs, w.num_levels), np.int8)
        self.nearby = np.zeros((history, num_envs, len(w.nearby_names)), bool)
        self.fresh = np.asarray(fresh_levels, np.int8)  # levels of every newly generated world
        self.start = np.zeros(num_envs, np.int64)
        self.start_levels = np.tile(self.fresh, (num_envs, 1))
        self.start_nearby = np.asarray(nearby0, bool).copy()
        self.nearby0 = self.start_nearby.copy()
        self.world_start = np.zeros(num_envs, np.int64)  # per-env step index of its world's first step
        self.step = 0  # per-env steps pushed so far

    def push(self, chunk: Chunk) -> SegmentBatch:
        """Add a rollout chunk (numpy leaves); return the segments that ended in it, in time order
        (by step, then env)."""
        t_len = chunk.task_done.shape[0]
        rows = (self.step + np.arange(t_len)) % self.h
        self.events[rows], self.levels[rows], self.nearby[rows] = chunk.events, chunk.levels, chunk.nearby
        if self.obs is not None:
            self.obs[rows], self.action[rows] = chunk.obs, chunk.action
        new = np.asarray(chunk.world_done if chunk.world_new is None else chunk.world_new)
        t, i = np.nonzero(chunk.task_done)  # row-major: time order, then env
        k = len(t)
        if self.span:  # world_since[r]: the first step of the world that step r of the chunk is in
            marks = np.where(new, self.step + np.arange(t_len)[:, None] + 1, -1)
            since = np.maximum(np.maximum.accumulate(marks, axis=0), self.world_start)
            world_since = np.concatenate([self.world_start[None], since[:-1]])
            self.world_start = since[-1]
        if not k:
            self.step += t_len
            return SegmentBatch.empty(0 if self.obs is None else self.obs.shape[-1], self.world)
        # An env may end several segments in one chunk: each after the first starts where the one
        # before it in the same env ended; the first starts where the tracker's per-env state says.
        by_env = np.lexsort((t, i))
        first = np.ones(k, bool)
        first[by_env[1:]] = i[by_env[1:]] != i[by_env[:-1]]
        prev = np.zeros(k, np.int64)
        prev[by_env[1:]] = t[by_env[:-1]]
        g = self.step + t
        start = np.where(first, self.start[i], self.step + prev + 1)
        after_prev = np.where(new[prev, i][:, None], self.fresh, chunk.levels[prev, i])
        start_levels = np.where(first[:, None], self.start_levels[i], after_prev)
        start_nearby = np.where(first[:, None], self.start_nearby[i], chunk.nearby[prev, i])
        start = np.maximum(start, g - self.h + 1)  # cannot happen while history > max_task_steps; guard anyway
        after = np.zeros(k, np.int64)
        if self.span:  # reach back to the world's start: the state before it is a fresh world's
            ws = world_since[t, i]
            span_start = np.minimum(start, np.maximum(ws, g - self.span + 1))
            back = (span_start < start)[:, None]
            row = (span_start - 1) % self.h
            start_levels = np.where(back, np.where((span_start == ws)[:, None], self.fresh, self.levels[row, i]),
                                    start_levels)
            start_nearby = np.where(back, np.where((span_start == 0)[:, None], self.nearby0[i], self.nearby[row, i]),
                                    start_nearby)
            after, start = start - span_start, span_start
        lengths = g - start + 1
        offs = np.cumsum(lengths) - lengths
        ring = _ranges(start, lengths) % self.h
        envs = np.repeat(i, lengths)
        body = np.arange(int(lengths.sum())) + np.repeat(np.arange(k), lengths) + 1  # after each start row
        levels = np.empty((len(body) + k, self.levels.shape[-1]), np.int8)
        nearby = np.empty((len(body) + k, self.nearby.shape[-1]), bool)
        levels[offs + np.arange(k)], nearby[offs + np.arange(k)] = start_levels, start_nearby
        levels[body], nearby[body] = self.levels[ring, envs], self.nearby[ring, envs]
        out = SegmentBatch(i.astype(np.int64), start, chunk.task[t, i].astype(np.int32),
                           chunk.success[t, i].astype(bool), chunk.world_done[t, i].astype(bool),
                           lengths, self.events[ring, envs], levels, nearby,
                           None if self.obs is None else self.obs[ring, envs],
                           None if self.obs is None else self.action[ring, envs], after=after)
        last = by_env[np.append(i[by_env[1:]] != i[by_env[:-1]], True)]  # each env's last segment
        tl, il = t[last], i[last]
        self.start[il] = self.step + tl + 1
        self.start_levels[il] = np.where(new[tl, il][:, None], self.fresh, chunk.levels[tl, il])
        self.start_nearby[il] = chunk.nearby[tl, il]
        self.step += t_len
        return out


class RelabelPool:
    """Recent relabels waiting to be trained on, drawn uniformly among those still in the replay
    (unused-first and rare-first draws measured no gain and were retired: docs/notebook/).

    ``used_frac``: of the relabels whose fate is settled (trained on at least once, or left the
    replay or the pool unused), the share that was trained on.
    """

    def __init__(self, capacity: int, history: int, window: int):
        self.h, self.window = history, window
        self.data = np.zeros((capacity, 4), np.int64)  # env, start, end, task
        self.used = np.zeros(capacity, bool)  # sampled at least once
        self.settled = np.zeros(capacity, bool)  # counted as used or as expired unused
        self.size = 0
        self.next = 0
        self.added = 0
        self.used_count = 0
        self.expired_unused = 0

    def add(self, env: int, start: int, end: int, task: int) -> None:
        if self.size == len(self.data) and not self.settled[self.next]:
            self.expired_unused += 1  # pushed out of the pool before it was ever trained on
        self.data[self.next] = (env, start, end, task)
        self.used[self.next] = self.settled[self.next] = False
        self.next = (self.next + 1) % len(self.data)
        self.size = min(self.size + 1, len(self.data))
        self.added += 1

    def __setstate__(self, state: dict) -> None:
        # Pools pickled in checkpoints before use was tracked: count from the resume on.
        cap = len(state["data"])
        state = {"used": np.zeros(cap, bool), "settled": np.ones(cap, bool),
                 "used_count": 0, "expired_unused": 0, **state}
        state.pop("sampling", None)  # retired options of older checkpoints
        state.pop("rare_drawn", None)
        self.__dict__.update(state)

    @property
    def used_frac(self) -> float | None:
        settled = self.used_count + self.expired_unused
        return self.used_count / settled if settled else None

    def sample(
        self, rng: np.random.Generator, batch: int, now: int, ready: np.ndarray | None = None,
    ) -> tuple[dict[str, np.ndarray], int]:
        """``batch`` relabels whose window is still in the replay (``now``: steps written so far).
        ``ready``: per instruction row, whether the learner has its embedding yet (None: all); a
        relabel of a row that is not ready waits in the pool, neither drawn nor expired, since
        the learner would see the row's all-zero placeholder embedding instead of its text.

        Returns the batch (padding rows invalid) and how many live relabels there were.
        """
        d = self.data[: self.size]
        first = np.maximum(d[:, 1], d[:, 2] - self.window + 1)
        alive = first >= now - self.h
        gone = ~alive & ~self.settled[: self.size]  # left the replay unused (used ones are settled)
        self.expired_unused += int(gone.sum())
        self.settled[: self.size] |= gone
        live = np.flatnonzero(alive if ready is None else alive & ready[d[:, 3]])
        pick = rng.choice(live, size=min(batch, len(live)), replace=False) if len(live) else live
        new = pick[~self.used[pick]]
        self.used_count += len(new)
        self.used[new] = self.settled[new] = True
        out = np.zeros((batch, 4), np.int64)
        out[: len(pick)] = d[pick]
        valid = np.arange(batch) < len(pick)
        cols = {k: out[:, j].astype(np.int32) for j, k in enumerate(("env", "start", "end", "task"))}
        return {**cols, "valid": valid}, len(live)


def save_segments(path, segments: list[Segment]) -> None:
    """Write segments to one ``.npz`` (concatenated arrays plus lengths), atomically."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    lengths = np.array([s.length for s in segments], np.int64)
    w = worlds.get()  # an empty file: any world's layout reads back as no segments
    empty = np.zeros((0, w.num_events), np.int8)
    arrays = {
        "lengths": lengths,
        "ended": np.array([s.ended for s in segments], bool),
        "after": np.array([s.after for s in segments], np.int64),
        "events": np.concatenate([s.events for s in segments]).astype(np.int16) if segments else empty,
        "levels": np.concatenate([s.levels for s in segments]).astype(np.int16) if segments else np.zeros((0, w.num_levels)),
        "nearby": np.concatenate([s.nearby for s in segments]) if segments else np.zeros((0, len(w.nearby_names)), bool),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


def load_segments(path) -> list[Segment]:
    """Segments saved by :func:`save_segments`; ValueError (one line) for anything else."""
    try:
        with np.load(path) as z:
            lengths, ended = z["lengths"], z["ended"]
            events, levels, nearby = z["events"], z["levels"], z["nearby"]
            # files saved before world spans have no "after": every segment was one instruction's
            after = z["after"] if "after" in z.files else np.zeros(len(lengths), np.int64)
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a segments file ({type(e).__name__}: {e})") from None
    if events.shape[0] != lengths.sum() or levels.shape[0] != lengths.sum() + len(lengths):
        raise ValueError(f"{path}: segment arrays do not add up to the stored lengths")
    out, e0, l0 = [], 0, 0
    try:
        for n, end, a in zip(lengths.tolist(), ended.tolist(), after.tolist(), strict=True):
            out.append(Segment(events[e0:e0 + n].astype(np.int32), levels[l0:l0 + n + 1].astype(np.int32),
                               nearby[l0:l0 + n + 1].astype(bool), bool(end), int(a)))
            e0, l0 = e0 + n, l0 + n + 1
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return out


class LateWindows:
    """Relabeled windows kept on the host, for relabels that come after their steps left the replay.

    A slow relabeler (an LLM on a CPU: seconds to minutes per request) answers long after the
    device replay has overwritten a segment's steps. One memory budget (``mb``) holds:

    * the steps (observations and actions) of each segment waiting for its relabels, put when it
      is handed to the relabeler and taken when its relabels come. The relabeler gets only the
      segments that :meth:`fitting` says fit; ``keep`` past the budget drops the oldest
      (``evicted``), the next one a first-in first-out relabeler would answer;
    * the windows cut from them, a ring of the newest ``capacity`` ones, sampled uniformly.
    """

    def __init__(self, mb: float, window: int, obs_dim: int):
        per = window * (2 * obs_dim + 1)
        budget = int(mb * 2**20)
        self.capacity = max(1, budget // 2 // per)
        self.segment_budget = budget - self.capacity * per
        self.window = window
        self.obs = np.zeros((self.capacity, window, obs_dim), np.float16)  # untouched pages cost nothing
        self.action = np.zeros((self.capacity, window), np.int8)
        self.first = np.zeros(self.capacity, np.int32)  # rows before it belong to no segment (masked)
        self.task = np.zeros(self.capacity, np.int32)
        self.size = self.next = 0
        self.segments: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # insertion-ordered
        self.segment_bytes = 0
        self.evicted = 0

    def __getstate__(self) -> dict:
        # Checkpoints hold the windows made so far, not the budget's untouched zeros.
        state = dict(self.__dict__)
        for k in ("obs", "action", "first", "task"):
            state[k] = state[k][: self.size]
        return state

    def __setstate__(self, state: dict) -> None:
        for k in ("obs", "action", "first", "task"):
            part = state[k]
            full = np.zeros((state["capacity"], *part.shape[1:]), part.dtype)
            full[: len(part)] = part
            state[k] = full
        self.__dict__.update(state)

    def keep(self, key: tuple[int, int], obs: np.ndarray, action: np.ndarray) -> None:
        """Hold a segment's steps until its relabels come (``key``: env, first step)."""
        size = obs.nbytes + action.nbytes
        if size > self.segment_budget:
            self.evicted += 1
            return
        while self.segments and self.segment_bytes + size > self.segment_budget:
            old = self.segments.pop(next(iter(self.segments)))
            self.segment_bytes -= old[0].nbytes + old[1].nbytes
            self.evicted += 1
        self.segments[key] = (obs.copy(), action.copy())
        self.segment_bytes += size

    def fitting(self, batch: SegmentBatch) -> int:
        """How many of ``batch``'s segments, taken in order, :meth:`keep` can hold beside those
        already waiting without dropping any."""
        per_step = batch.obs.shape[-1] * batch.obs.itemsize + batch.action.itemsize
        free = self.segment_budget - self.segment_bytes
        return int(np.searchsorted(np.cumsum(batch.lengths * per_step), free, side="right"))

    def take(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
        got = self.segments.pop(key, None)
        if got is not None:
            self.segment_bytes -= got[0].nbytes + got[1].nbytes
        return got

    def add(self, steps: tuple[np.ndarray, np.ndarray], step: int, task: int) -> None:
        """The window that ends at the segment's (1-based) step ``step``, for instruction ``task``."""
        obs, action = steps
        n = min(step, self.window)
        row = self.next
        self.obs[row, : self.window - n] = 0
        self.action[row, : self.window - n] = 0
        self.obs[row, self.window - n:] = obs[step - n:step]
        self.action[row, self.window - n:] = action[step - n:step]
        self.first[row], self.task[row] = self.window - n, task
        self.next = (self.next + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, k: int, ready: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``k`` windows at random, in :class:`RelabelBatch` columns (``[window, k]`` steps);
        ``ready`` as in :meth:`RelabelPool.sample` (a window of a row not ready is drawn invalid)."""
        idx = rng.choice(self.size, size=k, replace=self.size < k) if self.size and k else np.zeros(0, np.int64)
        valid = np.ones(k, bool) if ready is None else ready[self.task[idx]]
        return {"env": np.zeros(k, np.int32), "start": self.first[idx], "end": np.full(k, self.window - 1, np.int32),
                "task": self.task[idx], "valid": valid,
                "obs": self.obs[idx].transpose(1, 0, 2), "action": self.action[idx].T.astype(np.int32)}
