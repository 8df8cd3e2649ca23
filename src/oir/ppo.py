"""Instruction-conditioned PPO, PureJaxRL style: rollout, GAE and all epochs in one jitted update.

Each env follows its own instruction (:class:`~oir.env.TaskEnv`); the policy sees the observation
and the embedding of that instruction's text. An instruction's end (success, failure, timeout or
death) cuts the return: the next step belongs to a new instruction.
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
from oir.networks import ActorCritic, NetPreset
from oir.segments import RelabelBatch, relabel_windows, replay_write


@dataclass
class PPOConfig:
    num_steps: int = 64  # steps per env per update
    lr: float = 3e-4  # Adam learning rate
    anneal_lr: bool = True  # anneal the learning rate linearly to 0 over the run
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.8  # GAE lambda
    clip_eps: float = 0.2  # PPO's ratio clip
    ent_coef: float = 0.01  # entropy bonus
    vf_coef: float = 0.5  # value loss weight
    max_grad_norm: float = 1.0  # gradient clipping (global norm)
    update_epochs: int = 4  # passes over each rollout
    num_minibatches: int = 8  # minibatches per pass
    # Hindsight imitation of relabeled windows (GCSL, Ghosh et al. 2021): with relabeling, each
    # minibatch also minimises this times -log pi(a | s, hindsight instruction) over the window.
    # 0.02 beat 0 by 1.4 points on held-out tasks at 2M steps over 2 seeds and paid early at 5M;
    # 0.1 lost 4 points (docs/results.md).
    relabel_bc_coef: float = 0.02

    @property
    def imitates(self) -> bool:
        """Whether PPO trains on relabeled windows (it can only imitate them)."""
        return self.relabel_bc_coef > 0


class Transition(struct.PyTreeNode):
    obs: jax.Array
    task: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array  # the instruction ended: success, failure, timeout or the world's end
    truncated: jax.Array  # it ended by its time limit only (the world goes on)


def gae(reward, value, done, last_value, gamma: float, lam: float, boot=None) -> jax.Array:
    """Generalised advantage estimates over a [T, N] rollout; ``done`` cuts the bootstrap.

    ``boot[t]``: for an instruction cut short by its time limit, the value it would have had on,
    ``V(obs_{t+1}, same instruction)`` (0 where it really ended), so that a timeout is
    truncation, not termination (see :func:`oir.pqn.lambda_returns`).
    """
    boot = jnp.zeros_like(reward) if boot is None else boot

    def back(carry, x):
        adv_next, value_next = carry
        r, v, d, b = x
        keep = 1.0 - d
        adv = r + gamma * value_next * keep + gamma * b - v + gamma * lam * keep * adv_next
        return (adv, v), adv

    init = (jnp.zeros_like(last_value), last_value)
    return jax.lax.scan(back, init, (reward, value, done.astype(jnp.float32), boot), reverse=True)[1]


def ppo_loss(cfg: PPOConfig, logits, value, action, old_log_prob, old_value, adv, target):
    """Clipped surrogate + clipped value loss - entropy bonus; returns (total, (pg, v, entropy))."""
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.take_along_axis(logp_all, action[:, None], axis=-1)[:, 0]
    v_clipped = old_value + (value - old_value).clip(-cfg.clip_eps, cfg.clip_eps)
    v_loss = 0.5 * jnp.maximum((value - target) ** 2, (v_clipped - target) ** 2).mean()
    ratio = jnp.exp(logp - old_log_prob)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = -jnp.minimum(ratio * adv, ratio.clip(1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv).mean()
    entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
    total = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
    return total, (pg_loss, v_loss, entropy)


def hindsight_bc_loss(net, params, emb, obs, task, action, mask) -> jax.Array:
    """Hindsight behaviour cloning (GCSL) on ``[T, B]`` relabeled windows: the mean over unmasked
    steps of ``-log pi(a | s, g)`` under each window's hindsight instruction ``g``. (Self-imitation,
    weighting it by how far the window's return beats the value, measured no gain and was retired.)"""
    logits, _ = net.apply(params, obs, emb[task])
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)[..., 0]
    return -(logp * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def make_act(cfg: PPOConfig, preset: NetPreset, num_actions: int = NUM_ACTIONS):
    """``act(params, key, obs, instr) -> actions`` outside training: a sample from the policy."""
    net = ActorCritic(num_actions, preset)

    def act(params, key, obs, instr):
        logits, _ = net.apply(params, obs, instr)
        return jax.random.categorical(key, logits)

    return act


def make(cfg: PPOConfig, env: TaskEnv, preset: NetPreset, num_updates: int, relabel: RelabelShapes | None = None):
    """Returns ``(init, update, act)``.

    ``update(runner, rb) -> (runner, metrics, chunk)`` is jitted. With ``relabel``, ``chunk`` goes
    to the host; with ``relabel`` and ``cfg.imitates`` the rollout is also written to the
    replay and ``rb`` holds relabeled windows (otherwise ``rb`` is ignored and may be None).
    A window's actions were chosen for another instruction, so the clipped surrogate cannot use
    them (their probabilities under the hindsight instruction are not the behaviour policy's).
    They are learned instead by hindsight imitation, as in GCSL (Ghosh et al., 2021, "Learning to
    Reach Goals via Iterated Supervised Learning"): the actions that reached the hindsight
    instruction's success are imitated under its text, weighted by ``relabel_bc_coef`` in every
    minibatch's loss. Relabels also grow the instruction buffer, learned on-policy as well.
    """
    net = ActorCritic(env.vec.num_actions, preset)
    n = env.num_envs
    check_minibatches(n, cfg.num_steps, cfg.num_minibatches)

    def schedule(count):
        frac = 1.0 - (count // (cfg.num_minibatches * cfg.update_epochs)) / max(num_updates, 1)
        return cfg.lr * jnp.maximum(frac, 0.0)

    tx = optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.adam(schedule if cfg.anneal_lr else cfg.lr, eps=1e-5),
    )

    # Windows (and the replay they are cut from) only when they are imitated: at coefficient 0
    # they would cost a gather and a forward and backward pass per minibatch for nothing.
    imitate = relabel is not None and cfg.imitates

    def init(key, bank, weights, emb, hit=None) -> Runner:
        return init_runner(net, tx, env, key, bank, weights, emb, relabel.history if imitate else 0, hit)

    act = make_act(cfg, preset, env.vec.num_actions)

    if imitate and relabel.history % cfg.num_steps:
        raise ValueError(f"replay history {relabel.history} must be a multiple of num_steps {cfg.num_steps}")

    @partial(jax.jit, donate_argnums=0 if imitate else ())
    def update(r: Runner, rb: RelabelBatch | None = None):
        def step(carry, key):
            env_state, obs = carry
            k_act, k_env = jax.random.split(key)
            logits, value = net.apply(r.train.params, obs, r.emb[env_state.task])
            action = jax.random.categorical(k_act, logits)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]
            next_obs, env_state2, out = env.step(k_env, env_state, action)
            tr = Transition(obs, env_state.task, action, log_prob, value, out.reward, out.task_done,
                            out.timeout & ~out.world.done)
            return (env_state2, next_obs), (tr, out, env.vec.world.nearby_from_obs(next_obs) if relabel else None)

        key, k_roll = jax.random.split(r.key)
        (env_state, obs), (traj, outs, nearby) = jax.lax.scan(
            step, (r.env, r.obs), jax.random.split(k_roll, cfg.num_steps)
        )
        _, last_value = net.apply(r.train.params, obs, r.emb[env_state.task])

        # An instruction's time limit is truncation: its value bootstraps from the next observation.
        boot = timeout_values(lambda o, t: net.apply(r.train.params, o, r.emb[t])[1],
                              traj.obs, obs, traj.task, traj.truncated, env.max_task_steps)
        advantages = gae(traj.reward, traj.value, traj.done, last_value, cfg.gamma, cfg.gae_lambda, boot)
        targets = advantages + traj.value

        replay, bc_data = r.replay, None
        if imitate:
            replay = replay_write(r.replay, r.update * cfg.num_steps, traj.obs, traj.action)
            w_obs, w_action, _, _, w_mask = relabel_windows(replay, rb, relabel.window)
            bc_data = (w_obs, jnp.broadcast_to(rb.task[None, :], w_action.shape), w_action, w_mask.astype(jnp.float32))

        def loss_fn(params, tr: Transition, adv, target):
            logits, value = net.apply(params, tr.obs, r.emb[tr.task])
            total, parts = ppo_loss(cfg, logits, value, tr.action, tr.log_prob, tr.value, adv, target)
            if bc_data is None:
                return total, parts
            return total + cfg.relabel_bc_coef * hindsight_bc_loss(net, params, r.emb, *bc_data), parts

        key, k_epochs = jax.random.split(key)
        train, (_, (pg, vl, ent)) = minibatch_epochs(
            r.train, k_epochs, (traj, advantages, targets), loss_fn, cfg.update_epochs, cfg.num_minibatches
        )
        metrics = {**task_metrics(outs), "policy_loss": pg.mean(), "value_loss": vl.mean(), "entropy": ent.mean(),
                   **pool_metrics(env_state.vec)}
        chunk = None
        if relabel:
            chunk = chunk_of(outs, nearby, (traj.obs, traj.action) if relabel.late and imitate else None)
        if imitate:
            metrics |= {"relabel_windows": rb.valid.sum(),
                        "relabel_bc_loss": hindsight_bc_loss(net, train.params, r.emb, *bc_data)}
        new = r.replace(train=train, env=env_state, obs=obs, key=key, update=r.update + 1, replay=replay)
        return new, metrics, chunk

    return init, update, act
