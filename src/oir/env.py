"""The env layer: a Craftax world (Classic or full, :mod:`oir.worlds`), vectorized, with
optimistic resets and tasks.

Two composable layers, PureJaxRL style (pure functions over explicit state, jit-friendly):

* :class:`VecEnv`: N symbolic Craftax envs of one world stepped with ``vmap``. Every step also
  reports each env's events and levels (the world's counters). Envs whose game ended restart
  from a **pool of pre-generated worlds**: world generation costs about as much as a hundred
  steps, so generating a world for every env on every step (Craftax's own auto-reset) is
  ~14x slower than stepping. The host refills the pool's used slots between jitted calls
  (:meth:`VecEnv.refill`), so each finished episode costs one world generation, a step with
  no finished episode costs none, and no jitted step contains the world generator.
* :class:`TaskEnv`: gives every env its own task from a :class:`~oir.tasks.TaskBank`, checks
  it on every step in the same jitted function, rewards the first step it holds, and starts a
  new instruction (sampled from the bank's weights) when a task succeeds, fails, times out or
  the world ends, without resetting the world.

The policy only ever receives the observation and ``TaskState.task`` (an index used to look up
the instruction's text embedding); the spec stays inside the env (design doc §9).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from oir import tasks, worlds
from oir.worlds import World

NUM_ACTIONS = 17  # Craftax-Classic's; a VecEnv knows its own world's (num_actions)


def strong_types(tree):
    """Drop JAX weak types (Craftax's reset builds state from Python scalars).

    A weakly typed leaf turns strong after one jitted step, and jit keys its cache on weak
    types: without this, the second call of every rollout silently recompiles.
    """
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.asarray(x).dtype), tree)


@struct.dataclass
class VecState:
    env: Any  # batched craftax EnvState [N]
    pool: Any  # craftax EnvState [P]: fresh worlds waiting to be used, a ring
    pool_obs: jax.Array  # [P, obs_dim]
    pool_next: jax.Array  # int32: how many worlds were taken from the ring so far (the next is slot pool_next % P)
    pool_end: jax.Array  # int32: the ring holds fresh worlds for positions below this (written by refill)
    pool_reused: jax.Array  # int32: worlds handed out a second time, the ring having run dry (refill too late)
    episode_length: jax.Array  # int32[N]


@struct.dataclass
class VecStep:
    reward: jax.Array  # float32[N]: Craftax's own reward (achievement unlocks, health)
    done: jax.Array  # bool[N]: the game ended this step; the env now holds a fresh world
    events: jax.Array  # int32[N, NUM_EVENTS]: what happened this step
    levels: jax.Array  # int32[N, NUM_LEVELS]: inventory and vitals after the step
    episode_length: jax.Array  # int32[N]: length of the episode that just ended, else 0
    unlocked: jax.Array  # bool[N, NUM_ACHIEVEMENTS]: got for the first time in this episode (Craftax's reward for them)


# Worlds are generated GEN_CHUNK at a time by one jitted function per world, so every caller
# (reset of any size, refills, evaluation) shares one compiled generator.
GEN_CHUNK = 16


@jax.jit
def _position_keys(key: jax.Array, at: jax.Array) -> jax.Array:
    """The keys of the worlds for ring positions ``at`` to ``at + GEN_CHUNK``."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(at + jnp.arange(GEN_CHUNK))


def _jit_generator(env: Any, params: Any):
    """``gen(keys[K]) -> (obs, states)``: K fresh worlds of ``env`` at ``params``, jitted."""
    return jax.jit(lambda keys: strong_types(jax.vmap(env.reset_env, in_axes=(0, None))(keys, params)))


@functools.cache
def _generator(world: str):
    """:func:`_jit_generator` for ``world`` at its default params, once per process."""
    env = worlds.get(world).make_env()
    return _jit_generator(env, env.default_params)


# Joining and splitting generated worlds leaf by leaf outside jit compiled a kernel for every
# leaf of the state (over a hundred for full Craftax, seconds of start-up); one jitted call each.
@functools.partial(jax.jit, static_argnums=1)
def _join(chunks: tuple, n: int):
    """Chunks of generated worlds as one batch, the first ``n``."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs)[:n], *chunks)


@functools.partial(jax.jit, static_argnums=1)
def _fresh_state(generated: tuple[jax.Array, Any], n: int) -> tuple[jax.Array, VecState]:
    """The first ``n`` generated worlds as the envs, the rest as a full ring."""
    obs, worlds_ = generated
    state = VecState(
        env=jax.tree.map(lambda x: x[:n], worlds_),
        pool=jax.tree.map(lambda x: x[n:], worlds_),
        pool_obs=obs[n:],
        pool_next=jnp.zeros((), jnp.int32),
        pool_end=jnp.asarray(obs.shape[0] - n, jnp.int32),
        pool_reused=jnp.zeros((), jnp.int32),
        episode_length=jnp.zeros(n, jnp.int32),
    )
    return obs[:n], state


class VecEnv:
    """``num_envs`` symbolic envs of one world (default Craftax-Classic) with event counters and
    optimistic resets from a ring of fresh worlds.

    World generation is kept out of the jitted step: a finished episode takes the ring's next
    world, and the host writes fresh worlds into the used slots between jitted calls
    (:meth:`refill`). Full Craftax's world generator takes longer to compile than its step, and
    every jitted function that contained it (the learner's update, its init, the evaluator's
    reset and rollout) compiled it again; now one compiled generator serves them all. A ring
    that runs dry before a refill hands a world out again and counts it in ``pool_reused``.
    """

    def __init__(self, num_envs: int, reset_pool: int | None = None, params: Any = None,
                 world: World | str | None = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.num_envs = num_envs
        # Twice the envs: a learner refills after every update, and an update ends far fewer
        # episodes than that (each takes hundreds of steps).
        self.reset_pool = reset_pool or 2 * num_envs
        self.world = worlds.world_of(world)
        self.env = self.world.make_env()
        if params is None:
            self.params, self._gen = self.env.default_params, _generator(self.world.name)
        else:
            self.params = params
            self._gen = _jit_generator(self.env, params)
        self.obs_dim = int(self.env.observation_space(self.params).shape[0])
        self.num_actions = self.world.num_actions
        self._write = jax.jit(self._write_chunk, donate_argnums=0)

    def compile_generator(self) -> None:
        """Compile the world generator now rather than at the first reset (a caller may have other
        start-up work to overlap with it); it makes one chunk of worlds, thrown away."""
        self._gen(jax.random.split(jax.random.PRNGKey(0), GEN_CHUNK))
        _position_keys(jax.random.PRNGKey(0), jnp.zeros((), jnp.int32))  # the first refill's

    def compile_refill(self, state: VecState) -> None:
        """Compile :meth:`refill`'s write into the ring now, not at the first refill in the middle
        of training (2 s on full Craftax). A chunk is laid out as the ring it goes into (as
        :meth:`refill` puts it), so a sharded ring (``--devices``) does not compile a second write."""
        chunk = lambda x: jax.ShapeDtypeStruct((GEN_CHUNK, *x.shape[1:]), x.dtype, sharding=x.sharding)  # noqa: E731
        at = jax.ShapeDtypeStruct((), jnp.int32)
        self._write.lower(state, chunk(state.pool_obs), jax.tree.map(chunk, state.pool), at, at).compile()

    def generate(self, keys: jax.Array) -> tuple[jax.Array, Any]:
        """A freshly generated world ``(obs, state)`` per key, made GEN_CHUNK at a time."""
        n = keys.shape[0]
        pad = -n % GEN_CHUNK
        keys = jnp.concatenate([keys, jnp.broadcast_to(keys[:1], (pad, *keys.shape[1:]))])
        return _join(tuple(self._gen(k) for k in keys.reshape(-1, GEN_CHUNK, *keys.shape[1:])), n)

    def reset(self, key: jax.Array) -> tuple[jax.Array, VecState]:
        return _fresh_state(self.generate(jax.random.split(key, self.num_envs + self.reset_pool)), self.num_envs)

    def refill(self, key: jax.Array, state: VecState, start: int, n: int) -> VecState:
        """Host side, between jitted calls: fresh worlds for the ring's positions ``start`` to
        ``start + n``, the world at position i generated from ``fold_in(key, i)``.

        The caller keeps ``start + n <= pool_next + P`` (``pool_next`` as of the last jitted call
        it has read): a later position's slot still holds a world not yet taken, and overwriting
        it would hand its replacement out twice. :class:`oir.learn.WorldRefill` does so, writing
        just past ``pool_end`` up to the positions the next updates may take."""
        p = self.reset_pool
        if not 0 <= n <= p:
            raise ValueError(f"a refill writes 0 to {p} worlds (the pool), not {n}")
        for at in range(start, start + n, GEN_CHUNK):
            # The world at a position comes from its own key, however the refills are cut.
            obs, pool = self._gen(_position_keys(key, jnp.asarray(at, jnp.int32)))
            if state.pool_obs.sharding != obs.sharding:  # a learner on several devices
                obs, pool = jax.device_put((obs, pool), (state.pool_obs.sharding,
                                                         jax.tree.map(lambda x: x.sharding, state.pool)))
            count = jnp.asarray(min(GEN_CHUNK, start + n - at), jnp.int32)
            state = self._write(state, obs, pool, jnp.asarray(at, jnp.int32), count)
        return state

    def _write_chunk(self, state: VecState, obs: jax.Array, pool: Any, at: jax.Array, count: jax.Array) -> VecState:
        i = jnp.arange(obs.shape[0])
        idx = jnp.where(i < count, (at + i) % self.reset_pool, self.reset_pool)  # the rest are dropped
        return state.replace(
            pool=jax.tree.map(lambda old, new: old.at[idx].set(new, mode="drop"), state.pool, pool),
            pool_obs=state.pool_obs.at[idx].set(obs, mode="drop"),
            pool_end=jnp.maximum(state.pool_end, at + count).astype(jnp.int32),
        )

    def step(self, key: jax.Array, state: VecState, action: jax.Array) -> tuple[jax.Array, VecState, VecStep]:
        """One step of every env; the envs whose game ended restart from the pool."""
        obs, state, out = self.advance(key, state, action)
        obs, state = self.restart(state, obs, out.done)
        return obs, state, out

    def advance(self, key: jax.Array, state: VecState, action: jax.Array) -> tuple[jax.Array, VecState, VecStep]:
        """One step of every env and no restart: an env whose game ended still holds its world."""
        keys = jax.random.split(key, self.num_envs)
        step = jax.vmap(self.world.step_with_events, in_axes=(None, 0, 0, 0, None))
        obs, env_state, reward, done, events, levels = step(self.env, keys, state.env, action, self.params)
        length = state.episode_length + 1
        out = VecStep(
            reward=reward.astype(jnp.float32),
            done=done,
            events=events,
            levels=levels,
            episode_length=jnp.where(done, length, 0),
            unlocked=env_state.achievements & ~state.env.achievements,
        )
        return obs, state.replace(env=env_state, episode_length=jnp.where(done, 0, length)), out

    def restart(self, state: VecState, obs: jax.Array, mask: jax.Array) -> tuple[jax.Array, VecState]:
        """The envs in ``mask`` take the ring's next worlds, each its own."""
        slot = state.pool_next + jnp.cumsum(mask) - 1  # the ring positions they take, in env order
        at = slot % self.reset_pool

        def take(args):
            env_state, obs = args
            pick = lambda f, s: jnp.where(mask.reshape((-1,) + (1,) * (s.ndim - 1)), f[at], s)  # noqa: E731
            return jax.tree.map(pick, state.pool, env_state), pick(state.pool_obs, obs)

        env_state, obs = jax.lax.cond(mask.any(), take, lambda a: a, (state.env, obs))
        return obs, state.replace(env=env_state, pool_next=(state.pool_next + mask.sum()).astype(jnp.int32),
                                  pool_reused=(state.pool_reused + (mask & (slot >= state.pool_end)).sum()).astype(jnp.int32),
                                  episode_length=jnp.where(mask, 0, state.episode_length))


@struct.dataclass
class TaskState:
    vec: VecState
    task: jax.Array  # int32[N]: each env's current instruction (row of the bank)
    progress: tasks.Progress  # batched [N]
    bank: tasks.TaskBank  # [M]: the instructions that can be sampled
    cdf: jax.Array  # float32[M]: cumulative sampling weights; a zero-weight row is never drawn
    # Similarity rewards (the paper's ablation, ELLM) instead of the spec: hit[m, e] is what a step
    # with event e pays instruction m, 0 when their texts are not similar enough (None: verified).
    hit: jax.Array | None = None  # float32[M, NUM_EVENTS]
    # ELLM with an LLM suggester: its answers per state signature (oir.ellm.SuggestTable), else None.
    table: Any = None
    # float32[]: the achievement bonus (None: off).
    bonus: jax.Array | None = None
    # float32[NUM_ACHIEVEMENTS]: first-in-episode unlocks of each achievement so far in the run, all
    # envs (None: the bonus does not decay with them; TaskEnv's achievement_bonus_counts).
    unlocks: jax.Array | None = None


@struct.dataclass
class TaskStep:
    reward: jax.Array  # float32[N]: 1 on the step the task first holds (similarity: what it paid), else 0
    success: jax.Array  # bool[N]
    fail: jax.Array  # bool[N]: a none clause, the order or the budget broke
    fail_reason: jax.Array  # int32[N]: 0 or tasks.FAIL_*
    timeout: jax.Array  # bool[N]: max_task_steps reached without success or fail
    task_done: jax.Array  # bool[N]: the instruction ended (any reason, world end included)
    task: jax.Array  # int32[N]: the instruction that was followed this step
    task_steps: jax.Array  # int32[N]: steps since that instruction was given
    world: VecStep
    spec_success: jax.Array  # bool[N]: the instruction's spec holds now (== success with verified rewards)


class TaskEnv:
    """A :class:`VecEnv` where every env follows its own task from a bank.

    An instruction that ends (success, failure, timeout) is followed by the next one where the
    agent stands; a timeout's value bootstraps from the next observation.
    ``suggest(key, obs, world, levels, table) -> int32[N]``: instructions are drawn from the state
    instead of the bank's weights (ELLM, :mod:`oir.ellm`); ``table``, the initial
    ``TaskState.table`` it reads (an LLM suggester's answers, which the host replaces as they come).
    ``achievement_bonus``: added to the reward for every achievement got for the first time in
    the episode, whatever the instruction (Craftax's own reward for it, scaled): an exploration
    bonus that reaches the tech tree's rare steps, which the instruction's reward alone seldom
    pays for. It never makes a success. ``achievement_bonus_counts`` K > 0 makes it count-based: an
    achievement got n > K times so far in the run (first unlocks, all envs) pays
    ``achievement_bonus * sqrt(K / n)``, so a common one (wood) soon pays little and leaves the easy
    instructions alone, while a rare one (stone, coal) keeps its full bonus, the classic count-based
    exploration bonus (Strehl and Littman 2008; Bellemare et al. 2016).
    """

    def __init__(self, vec: VecEnv, max_task_steps: int = 1000, suggest=None,
                 table=None, achievement_bonus: float = 0.0, achievement_bonus_counts: int = 0):
        if max_task_steps < 1:
            raise ValueError(f"max_task_steps must be at least 1, got {max_task_steps}")
        if achievement_bonus < 0.0:
            raise ValueError(f"achievement_bonus must be >= 0, got {achievement_bonus}")
        if achievement_bonus_counts < 0:
            raise ValueError(f"achievement_bonus_counts must be >= 0, got {achievement_bonus_counts}")
        self.achievement_bonus = achievement_bonus
        self.achievement_bonus_counts = achievement_bonus_counts
        self.vec = vec
        self.num_envs = vec.num_envs
        self.max_task_steps = max_task_steps
        self.suggest, self.table = suggest, table

    def refill(self, key: jax.Array, state: TaskState, start: int, n: int) -> TaskState:
        """:meth:`VecEnv.refill` of the worlds under the tasks."""
        return state.replace(vec=self.vec.refill(key, state.vec, start, n))

    def _draw(self, key: jax.Array, cdf: jax.Array, obs: jax.Array, vec: VecState, table=None) -> jax.Array:
        """The next instruction of every env: by the bank's weights, or (``suggest``, ELLM) from
        what a suggester proposes for the state each env is in now."""
        if self.suggest is None:
            return self._sample(key, cdf)
        return self.suggest(key, obs, vec.env, jax.vmap(self.vec.world.levels_of)(vec.env), table)

    def _sample(self, key: jax.Array, cdf: jax.Array) -> jax.Array:
        # Inverse-CDF: N uniforms and a binary search, where categorical() would draw N x M
        # Gumbels on every step.
        u = jax.random.uniform(key, (self.num_envs,)) * cdf[-1]
        return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1).astype(jnp.int32)

    @staticmethod
    def weights_cdf(weights: jax.Array) -> jax.Array:
        """The sampling table for ``weights`` (non-negative, one per bank row)."""
        return jnp.cumsum(jnp.asarray(weights, jnp.float32))

    def reset(
        self, key: jax.Array, bank: tasks.TaskBank, weights: jax.Array | None = None, hit: jax.Array | None = None
    ) -> tuple[jax.Array, TaskState]:
        """Fresh worlds, and a task for every env drawn by ``weights`` (uniform if None).

        With ``hit`` (float[M, NUM_EVENTS]: what an event pays instruction m, 0 when its text is not
        similar enough) a task succeeds at the first step with a paying event and is paid the best
        such event (similarity rewards); it never fails.
        """
        k_env, k_task = jax.random.split(key)
        obs, vec = self.vec.reset(k_env)  # on the host (VecEnv.reset); the rest is one jitted call
        return self._start(k_task, obs, vec, bank, weights, hit)

    @functools.partial(jax.jit, static_argnums=0)
    def _start(self, key: jax.Array, obs: jax.Array, vec: VecState, bank: tasks.TaskBank,
               weights: jax.Array | None, hit: jax.Array | None) -> tuple[jax.Array, TaskState]:
        cdf = self.weights_cdf(jnp.ones(bank.size) if weights is None else weights)
        state = TaskState(
            vec=vec,
            task=self._draw(key, cdf, obs, vec, self.table),
            progress=tasks.progress_init((self.num_envs,), self.vec.world.num_events),
            bank=bank,
            cdf=cdf,
            hit=None if hit is None else jnp.asarray(hit, jnp.float32),
            table=self.table,
            bonus=jnp.float32(self.achievement_bonus) if self.achievement_bonus > 0 else None,
            unlocks=(jnp.zeros(len(self.vec.world.achievements), jnp.float32)
                     if self.achievement_bonus > 0 and self.achievement_bonus_counts > 0 else None),
        )
        return obs, state

    def step(self, key: jax.Array, state: TaskState, action: jax.Array) -> tuple[jax.Array, TaskState, TaskStep]:
        k_env, k_task = jax.random.split(key)
        obs, vec, world = self.vec.step(k_env, state.vec, action)
        spec = state.bank.take(state.task)
        progress, success, fail, reason = jax.vmap(tasks.progress_step)(
            spec, state.progress, world.events, world.levels
        )
        spec_success, reward = success, success.astype(jnp.float32)
        if state.hit is not None:
            reward = similarity_reward(world.events, state.hit[state.task])
            success = reward > 0
            fail, reason = jnp.zeros_like(fail), jnp.zeros_like(reason)
        unlocks = state.unlocks
        if state.bonus is not None:
            per = jnp.broadcast_to(state.bonus, (len(self.vec.world.achievements),))
            if unlocks is not None:
                per = per * jnp.minimum(1.0, jnp.sqrt(self.achievement_bonus_counts / jnp.maximum(unlocks, 1.0)))
                unlocks = unlocks + world.unlocked.sum(0)
            reward = reward + (world.unlocked * per).sum(-1)
        timeout = (progress.t >= self.max_task_steps) & ~success & ~fail
        task_done = success | fail | timeout | world.done
        new_task = jnp.where(task_done, self._draw(k_task, state.cdf, obs, vec, state.table), state.task)
        new_state = state.replace(
            vec=vec, task=new_task, progress=tasks.progress_restart(progress, task_done), unlocks=unlocks
        )
        out = TaskStep(
            reward=reward,
            success=success,
            fail=fail,
            fail_reason=reason,
            timeout=timeout,
            task_done=task_done,
            task=state.task,
            task_steps=progress.t,
            world=world,
            spec_success=spec_success,
        )
        return obs, new_state, out


def similarity_reward(events: jax.Array, pay: jax.Array) -> jax.Array:
    """float32[N]: what a step pays by similarity: the best ``pay[n, e]`` (the instruction's row
    of ``TaskState.hit``) over the events e that happened in it, 0 with none."""
    return jnp.where(events > 0, pay, 0.0).max(-1)


def pool_metrics(vec: VecState) -> dict[str, jax.Array]:
    """The world ring's positions after a rollout: taken so far, and handed out twice (the host
    refilled too late)."""
    return {"pool_next": vec.pool_next, "pool_reused": vec.pool_reused}


def task_metrics(out: TaskStep) -> dict[str, jax.Array]:
    """Scalars over a rollout of stacked TaskSteps ([T, N] fields), for metrics.jsonl."""
    ended = out.task_done.sum()
    per_task = jnp.maximum(ended, 1)
    deaths = out.world.done.sum()
    return {
        "tasks_ended": ended,
        "success_rate": out.success.sum() / per_task,
        "mean_return": out.reward.sum() / per_task,
        "fail_rate": out.fail.sum() / per_task,
        "timeout_rate": out.timeout.sum() / per_task,
        "task_length": jnp.where(out.task_done, out.task_steps, 0).sum() / per_task,
        "episodes_ended": deaths,
        "episode_length": out.world.episode_length.sum() / jnp.maximum(deaths, 1),
        # Similarity rewards against the instructions' specs (both 0 by construction when verified):
        # rewards given where the spec did not hold, and instructions that ended with their spec
        # holding but never rewarded.
        "reward_false_rate": (out.success & ~out.spec_success).sum() / jnp.maximum(out.success.sum(), 1),
        "reward_missed_rate": (out.task_done & ~out.success & out.spec_success).sum()
        / jnp.maximum((out.task_done & out.spec_success).sum(), 1),
    }
