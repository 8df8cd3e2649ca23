"""Instruction-conditioned PQN (parallel Q-learning): the paper's learner.

Q(obs, instruction) with LayerNorm, epsilon-greedy rollouts from many envs, Q(lambda) returns,
several epochs of minibatch regression: no target network, all in one jitted update. An
instruction's end (success, failure, timeout or death) cuts the return.

With relabeling, each update also trains on ``B`` relabeled windows cut from the replay of
recent steps (:mod:`oir.segments`): the same actions, conditioned on the hindsight instruction's
text, with reward 1 and a terminal at the step its spec first held. Q-learning is off-policy,
so experience gathered under another instruction is valid data for it; the windows join the
rollout's transitions in the same minibatches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import struct

from oir.env import NUM_ACTIONS, TaskEnv, pool_metrics, task_metrics
from oir.learn import (
    RelabelShapes,
    Runner,
    check_minibatches,
    chunk_of,
    init_runner,
    minibatch_epochs,
    timeout_values,
)
from oir.networks import NetPreset, QNetwork
from oir.segments import RelabelBatch, relabel_windows, replay_write


@dataclass
class PQNConfig:
    num_steps: int = 16  # steps per env per update
    lr: float = 3e-4  # Adam learning rate
    anneal_lr: bool = True  # anneal the learning rate linearly to 0 over the run
    gamma: float = 0.99  # discount
    lam: float = 0.5  # Q(lambda)
    # Relabeled windows' actions followed another instruction: "peng" keeps lambda on them,
    # "watkins" cuts the trace after an action that is not greedy for the hindsight instruction,
    # "onestep" uses lambda = 0 there.
    relabel_trace: str = "peng"
    eps_start: float = 1.0  # epsilon-greedy exploration at the start...
    eps_finish: float = 0.05  # ...and after the decay
    eps_decay: float = 0.2  # fraction of training over which epsilon decays
    num_epochs: int = 2  # passes over each rollout
    num_minibatches: int = 4  # minibatches per pass
    max_grad_norm: float = 10.0  # gradient clipping (global norm)
    eval_epsilon: float = 0.05  # acting outside training: a fully greedy agent can stall against a wall


class Transition(struct.PyTreeNode):
    obs: jax.Array
    task: jax.Array
    action: jax.Array
    reward: jax.Array
    done: jax.Array  # the instruction ended: success, failure, timeout or the world's end
    truncated: jax.Array  # it ended by its time limit only (the world goes on)
    q_max: jax.Array  # max_a Q(obs, instruction): the bootstrap for the step before
    weight: jax.Array  # 1 for rollout steps and live relabeled steps, 0 for padding


def lambda_returns(reward, done, q_max, last_q, gamma: float, lam: float, boot=None) -> jax.Array:
    """Q(lambda) targets over a [T, N] rollout.

    ``q_max[t]`` is max_a Q(obs_t); the target of step t mixes the next step's target and its
    greedy value: ``G_t = r_t + gamma (1 - d_t) (lam G_{t+1} + (1 - lam) max_a Q(obs_{t+1}))
    + gamma boot_t``, with ``G_T = max_a Q(obs_T)``. ``boot_t`` is the value an instruction cut
    short by its time limit would have had on (``max_a Q(obs_{t+1}, same instruction)``; 0 where
    it really ended): a timeout is truncation, not termination (Pardo et al., 2018, "Time Limits
    in Reinforcement Learning"), since the observation holds no clock.
    """
    boot = jnp.zeros_like(reward) if boot is None else boot
    lam = jnp.broadcast_to(jnp.asarray(lam, jnp.float32), reward.shape)  # per step: Watkins cuts

    def back(carry, x):
        ret_next, q_next = carry
        r, d, q, b, lam_t = x
        ret = r + gamma * (1.0 - d) * (lam_t * ret_next + (1.0 - lam_t) * q_next) + gamma * b
        return (ret, q), ret

    xs = (reward, done.astype(jnp.float32), q_max, boot, lam)
    return jax.lax.scan(back, (last_q, last_q), xs, reverse=True)[1]


RELABEL_TRACES = ("peng", "watkins", "onestep")


def trace_lambda(cfg: PQNConfig, q: jax.Array, action: jax.Array) -> jax.Array:
    """Per-step lambda for a ``[T, B]`` relabeled window: the target of step t follows the trace
    into step t+1 only where ``cfg.relabel_trace`` allows it (Watkins: a_{t+1} greedy)."""
    if cfg.relabel_trace == "onestep":
        return jnp.zeros(action.shape, jnp.float32)
    if cfg.relabel_trace == "peng":
        return jnp.full(action.shape, cfg.lam, jnp.float32)
    greedy = (jnp.argmax(q, -1) == action).astype(jnp.float32)
    nxt = jnp.concatenate([greedy[1:], jnp.ones_like(greedy[:1])], axis=0)  # the last step's target ends the window
    return cfg.lam * nxt


def td_loss(q, action, target, weight=None):
    """0.5 * (weighted) mean squared error of Q(obs, action) to the constant targets; also mean Q."""
    q_a = jnp.take_along_axis(q, action[:, None], axis=-1)[:, 0]
    w = jnp.ones_like(q_a) if weight is None else weight
    err = (q_a - jax.lax.stop_gradient(target)) ** 2
    return 0.5 * (w * err).sum() / jnp.maximum(w.sum(), 1.0), q_a.mean()


def make_act(cfg: PQNConfig, preset: NetPreset, num_actions: int = NUM_ACTIONS):
    """``act(params, key, obs, instr) -> actions`` outside training: greedy, ``eval_epsilon`` random."""
    net = QNetwork(num_actions, preset)

    def act(params, key, obs, instr):
        k_explore, k_rand = jax.random.split(key)
        greedy = jnp.argmax(net.apply(params, obs, instr), axis=-1)
        random = jax.random.randint(k_rand, greedy.shape, 0, num_actions)
        return jnp.where(jax.random.uniform(k_explore, greedy.shape) < cfg.eval_epsilon, random, greedy)

    return act


def make(cfg: PQNConfig, env: TaskEnv, preset: NetPreset, num_updates: int, relabel: RelabelShapes | None = None):
    """Returns ``(init, update, act)``.

    ``update(runner, rb) -> (runner, metrics, chunk)`` is jitted. Without ``relabel``, ``rb``
    and ``chunk`` are None. With it, ``rb`` is a :class:`~oir.segments.RelabelBatch` of
    ``relabel.batch`` windows, ``chunk`` the rollout's :class:`~oir.segments.Chunk` for the host,
    and the runner is donated (the replay is updated in place).
    """
    net = QNetwork(env.vec.num_actions, preset)
    n = env.num_envs
    if cfg.relabel_trace not in RELABEL_TRACES:
        raise ValueError(f"unknown --pqn.relabel-trace {cfg.relabel_trace!r} (choose from {', '.join(RELABEL_TRACES)})")
    # Relabeled windows ([window, B] transitions) join the rollout's [num_steps, N] as extra columns.
    extra = relabel.batch * relabel.window // cfg.num_steps if relabel else 0
    if relabel and (relabel.batch * relabel.window) % cfg.num_steps:
        raise ValueError(f"relabeled windows x window length ({relabel.batch} x {relabel.window}) must be a "
                         f"multiple of num_steps ({cfg.num_steps})")
    check_minibatches(n + extra, cfg.num_steps, cfg.num_minibatches)
    if relabel and (relabel.history % cfg.num_steps or relabel.window > relabel.history):
        raise ValueError(f"replay history {relabel.history} must be a multiple of num_steps {cfg.num_steps} "
                         f"and at least the window {relabel.window}")
    grad_steps = num_updates * cfg.num_epochs * cfg.num_minibatches
    lr = optax.linear_schedule(cfg.lr, 1e-20, max(grad_steps, 1)) if cfg.anneal_lr else cfg.lr
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.radam(lr))

    def epsilon(update):
        frac = jnp.minimum(update / max(cfg.eps_decay * num_updates, 1.0), 1.0)
        return cfg.eps_start + frac * (cfg.eps_finish - cfg.eps_start)

    def init(key, bank, weights, emb, hit=None) -> Runner:
        return init_runner(net, tx, env, key, bank, weights, emb, relabel.history if relabel else 0, hit)

    act = make_act(cfg, preset, env.vec.num_actions)

    def relabeled(r: Runner, rb: RelabelBatch) -> tuple[Transition, jax.Array]:
        """The batch's windows as transitions with their Q(lambda) targets, ``[window, B]``."""
        obs, action, reward, done, mask = relabel_windows(r.replay, rb, relabel.window)
        instr = jnp.broadcast_to(rb.task[None, :], action.shape)
        q = net.apply(r.train.params, obs, r.emb[instr])
        q_max = q.max(-1)
        targets = lambda_returns(reward, done, q_max, jnp.zeros_like(q_max[0]), cfg.gamma,
                                 trace_lambda(cfg, q, action))
        return Transition(obs, instr, action, reward, done, jnp.zeros_like(done), q_max, mask.astype(jnp.float32)), targets

    @partial(jax.jit, donate_argnums=0 if relabel else ())
    def update(r: Runner, rb: RelabelBatch | None):
        eps = epsilon(r.update)

        def step(carry, key):
            env_state, obs = carry
            k_explore, k_rand, k_env = jax.random.split(key, 3)
            q = net.apply(r.train.params, obs, r.emb[env_state.task])
            greedy = jnp.argmax(q, axis=-1)
            random = jax.random.randint(k_rand, (n,), 0, env.vec.num_actions)
            action = jnp.where(jax.random.uniform(k_explore, (n,)) < eps, random, greedy)
            next_obs, env_state2, out = env.step(k_env, env_state, action)
            truncated = out.timeout & ~out.world.done
            tr = Transition(obs, env_state.task, action, out.reward, out.task_done, truncated, q.max(-1), jnp.ones(n))
            return (env_state2, next_obs), (tr, out, env.vec.world.nearby_from_obs(next_obs) if relabel else None)

        key, k_roll = jax.random.split(r.key)
        (env_state, obs), (traj, outs, nearby) = jax.lax.scan(
            step, (r.env, r.obs), jax.random.split(k_roll, cfg.num_steps)
        )
        last_q = net.apply(r.train.params, obs, r.emb[env_state.task]).max(-1)

        # An instruction's time limit is truncation: its value bootstraps from the next observation.
        boot = timeout_values(lambda o, t: net.apply(r.train.params, o, r.emb[t]).max(-1),
                              traj.obs, obs, traj.task, traj.truncated, env.max_task_steps)
        targets = lambda_returns(traj.reward, traj.done, traj.q_max, last_q, cfg.gamma, cfg.lam, boot)
        replay, chunk, more = r.replay, None, {}
        if relabel:
            # Write this rollout first, as the pool's liveness check assumes: windows whose steps
            # it overwrites (the oldest in the ring) were not sampled.
            replay = replay_write(r.replay, r.update * cfg.num_steps, traj.obs, traj.action)
            rollout_steps = (traj.obs, traj.action)  # before the windows join them
            rl_traj, rl_targets = relabeled(r.replace(replay=replay), rb)
            # Targets are computed per window; minibatches ignore time, so re-split into columns.
            rl_traj, rl_targets = jax.tree.map(lambda x: x.reshape((cfg.num_steps, extra, *x.shape[2:])),
                                               (rl_traj, rl_targets))
            traj = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), traj, rl_traj)
            targets = jnp.concatenate([targets, rl_targets], axis=1)
            chunk = chunk_of(outs, nearby, rollout_steps if relabel.late else None)
            more = {"relabel_windows": rb.valid.sum(), "relabel_q": (rl_traj.q_max * rl_traj.weight).sum()
                    / jnp.maximum(rl_traj.weight.sum(), 1.0)}

        def loss_fn(params, mb, target):
            return td_loss(net.apply(params, mb.obs, r.emb[mb.task]), mb.action, target, mb.weight)

        key, k_epochs = jax.random.split(key)
        train, (loss, q_mean) = minibatch_epochs(
            r.train, k_epochs, (traj, targets), loss_fn, cfg.num_epochs, cfg.num_minibatches
        )
        metrics = {**task_metrics(outs), "td_loss": loss.mean(), "q_mean": q_mean.mean(), "epsilon": eps, **more,
                   **pool_metrics(env_state.vec)}
        new = r.replace(train=train, env=env_state, obs=obs, key=key, update=r.update + 1, replay=replay)
        return new, metrics, chunk

    return init, update, act
