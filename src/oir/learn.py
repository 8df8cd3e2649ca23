"""What PQN and PPO share: the runner state, its initialisation, and minibatch epochs.

The algorithms themselves live one file each (``oir/pqn.py``, ``oir/ppo.py``), CleanRL style.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from oir.env import GEN_CHUNK, TaskEnv, TaskState, TaskStep, strong_types
from oir.segments import Chunk, Replay, replay_init


@dataclass(frozen=True)
class RelabelShapes:
    """How a learner takes part in relabeling (None for ``--relabel none``)."""

    batch: int  # relabeled windows trained on per update (PQN); PPO trains on none of them
    window: int  # steps per relabeled window
    history: int  # steps of every env kept in the replay (a multiple of the rollout length)
    late: bool = False  # a late-window store is on: chunks carry the steps, batches may carry windows


@struct.dataclass
class Runner:
    """Everything a jitted update carries from one call to the next."""

    train: TrainState
    env: TaskState
    obs: jax.Array
    emb: jax.Array  # float32[M, D]: embedding of every bank row's instruction text
    key: jax.Array
    update: jax.Array  # int32: updates done
    replay: Replay | None = None  # recent steps for relabeled windows (PQN with relabeling)


class WorldRefill:
    """The host side of an env's world ring between jitted rollouts (:meth:`oir.env.VecEnv.refill`).

    Once a rollout is dispatched and the one before it read back, fresh worlds go into the ring
    up to the positions the next two rollouts may take: twice the most any of the last eight took,
    plus a chunk. No position is written twice, so a world taken costs about one generation; a
    rollout that takes more than that counts the worlds it reuses (``pool_reused``).
    """

    def __init__(self, env: TaskEnv, key: jax.Array, state: TaskState):
        self.env, self.key = env, key
        env.vec.compile_refill(state.vec)
        self.taken, self.written = int(state.vec.pool_next), int(state.vec.pool_end)
        self.recent: deque[int] = deque(maxlen=8)

    def observe(self, pool_next: int) -> None:
        """How far into the ring a finished rollout took (its ``pool_next``)."""
        self.recent.append(int(pool_next) - self.taken)
        self.taken = int(pool_next)

    def __call__(self, state: TaskState) -> TaskState:
        p = self.env.vec.reset_pool
        target = self.taken + (min(p, 2 * max(self.recent) + GEN_CHUNK) if self.recent else p)
        start = max(self.written, self.taken)  # a ring run dry: the positions behind were reused
        if target <= start:
            return state
        # Whole chunks: the generator makes GEN_CHUNK worlds a call, so the rest would be thrown away.
        target = min(start + -(-(target - start) // GEN_CHUNK) * GEN_CHUNK, self.taken + p)
        state = self.env.refill(self.key, state, start, target - start)
        self.written = target
        return state


def init_runner(
    net: nn.Module,
    tx: optax.GradientTransformation,
    env: TaskEnv,
    key,
    bank,
    weights,
    emb,
    replay_history: int = 0,
    hit=None,
) -> Runner:
    """Fresh worlds, sampled instructions and network parameters (and an empty replay)."""
    k_net, k_env, k_run = jax.random.split(key, 3)
    obs, env_state = env.reset(k_env, bank, weights, hit)
    params = jax.jit(net.init)(k_net, obs[:1], emb[:1])
    train = TrainState.create(apply_fn=net.apply, params=params, tx=tx)
    replay = replay_init(replay_history, env.num_envs, obs.shape[-1]) if replay_history else None
    runner = Runner(train, env_state, obs, jnp.array(emb), k_run, jnp.zeros((), jnp.int32), replay)
    return strong_types(runner)


def chunk_of(outs: TaskStep, nearby: jax.Array, steps: tuple[jax.Array, jax.Array] | None = None) -> Chunk:
    """The host's view of a ``[T, N]`` rollout, for cutting segments (``nearby`` of each next obs);
    with ``steps`` (observations, actions) also the steps themselves, for a late-window store."""
    return Chunk(
        task=outs.task,
        task_done=outs.task_done,
        success=outs.success,
        world_done=outs.world.done,
        events=outs.world.events.astype(jnp.int8),
        levels=outs.world.levels.astype(jnp.int8),
        nearby=nearby,
        world_new=outs.world.done,
        obs=None if steps is None else steps[0].astype(jnp.float16),
        action=None if steps is None else steps[1].astype(jnp.int8),
    )


def check_minibatches(num_envs: int, num_steps: int, num_minibatches: int) -> None:
    """A rollout of ``num_envs x num_steps`` must split into equal minibatches (ValueError if not)."""
    batch = num_envs * num_steps
    if num_minibatches < 1 or batch % num_minibatches:
        raise ValueError(f"num_envs x num_steps ({batch}) must divide into {num_minibatches} minibatches")


def minibatch_epochs(
    train: TrainState,
    key: jax.Array,
    data,
    loss_fn: Callable,
    num_epochs: int,
    num_minibatches: int,
):
    """``num_epochs`` passes of shuffled minibatch gradient steps over ``data`` ([T, N, ...] leaves).

    ``loss_fn(params, *minibatch) -> (loss, aux)``. Returns the new train state and the stacked
    ``(loss, aux)`` of every step.
    """
    leaves = jax.tree.leaves(data)
    batch = leaves[0].shape[0] * leaves[0].shape[1]

    def epoch(train, key):
        perm = jax.random.permutation(key, batch)
        flat = jax.tree.map(lambda x: x.reshape((batch, *x.shape[2:])), data)
        mbs = jax.tree.map(lambda x: x[perm].reshape((num_minibatches, -1, *x.shape[1:])), flat)

        def step(train, mb):
            out, grads = jax.value_and_grad(loss_fn, has_aux=True)(train.params, *mb)
            return train.apply_gradients(grads=grads), out

        return jax.lax.scan(step, train, mbs)

    return jax.lax.scan(epoch, train, jax.random.split(key, num_epochs))


def timeout_values(value_fn, traj_obs, last_obs, task, truncated, max_task_steps: int = 1) -> jax.Array:
    """``value_fn(next_obs, task)`` where ``truncated`` (the instruction timed out), else 0: the
    bootstrap of :func:`oir.pqn.lambda_returns` and :func:`oir.ppo.gae`. Batched over the whole [T, N]
    rollout after it, rather than a second forward pass inside every step, and skipped when no
    instruction of the rollout timed out.

    An env's instructions time out ``max_task_steps`` steps apart at the closest, so a rollout
    holds at most ``N * ((T - 1) // max_task_steps + 1)`` timeouts; the network sees those steps
    alone (64 of 4,096 at the defaults), not the whole rollout: on full Craftax the whole-rollout
    pass cost about 6% of a PPO update."""
    traj_obs, last_obs, task, truncated = (jnp.asarray(x) for x in (traj_obs, last_obs, task, truncated))
    steps, n = truncated.shape
    k = n * ((steps - 1) // max_task_steps + 1)
    if k >= steps * n:
        def values():
            next_obs = jnp.concatenate([traj_obs[1:], last_obs[None]], axis=0)
            return jnp.where(truncated, value_fn(next_obs, task), 0.0).astype(jnp.float32)
    else:
        def values():
            # The timed-out steps, padded with an index past the end that the scatter drops.
            (at,) = jnp.nonzero(truncated.reshape(-1), size=k, fill_value=steps * n)
            t, e = jnp.minimum(at // n, steps - 1), at % n
            nxt = jnp.minimum(t + 1, steps - 1)
            inside = (t + 1 < steps).reshape((k,) + (1,) * (traj_obs.ndim - 2))
            next_obs = jnp.where(inside, traj_obs[nxt, e], last_obs[e])
            v = value_fn(next_obs, task[t, e]).astype(jnp.float32)
            return jnp.zeros(steps * n, jnp.float32).at[at].set(v, mode="drop").reshape(steps, n)

    return jax.lax.cond(truncated.any(), values, lambda: jnp.zeros(truncated.shape, jnp.float32))
