"""Env throughput: the raw Craftax step, Craftax's own auto-reset, and our task env, one run.

    .venv/bin/python bench/env_speed.py --num-envs 64 --steps 256 --repeats 3
    .venv/bin/python bench/env_speed.py --env full    # full Craftax (Craftax-Symbolic-v1)

Each variant steps ``num_envs`` symbolic envs of one world with uniform random actions inside
one jitted ``lax.scan`` of ``steps`` steps. The first call (compile) is timed apart; steps/s is
the best of ``repeats`` timed calls after it, with ``block_until_ready``.

* raw: ``step_env`` vmapped, no reset at all (dead envs keep stepping): the ceiling.
* naive auto-reset: Craftax's auto-resetting env (``CraftaxClassicSymbolicEnv``,
  ``CraftaxSymbolicEnv``), which generates a new world for every env on every step and keeps it
  only where the episode ended.
* oir TaskEnv: our env with event counters, optimistic resets from a world pool, and every env
  checking its own task from the world's standard suite each step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import tyro

from oir import jaxcache, worlds
from oir.env import TaskEnv, VecEnv
from oir.learn import WorldRefill
from oir.suites import load_suite
from oir.tasks import TaskBank


@dataclass
class Args:
    num_envs: int = 64
    steps: int = 256  # steps per jitted call
    repeats: int = 3  # timed calls after the compile call
    seed: int = 0
    env: str = "classic"  # the world: classic or full


def _auto_reset_env(world: worlds.World):
    if world.name == "full":
        from craftax.craftax.envs.craftax_symbolic_env import CraftaxSymbolicEnv

        return CraftaxSymbolicEnv()
    from craftax.craftax_classic.envs.craftax_symbolic_env import CraftaxClassicSymbolicEnv

    return CraftaxClassicSymbolicEnv()


def _rollout(step_fn, num_envs: int, steps: int, num_actions: int):
    """jit(scan) of ``steps`` random-action steps; ``step_fn(key, state, action) -> state``."""

    def run(key, state):
        def body(state, k):
            k_act, k_step = jax.random.split(k)
            action = jax.random.randint(k_act, (num_envs,), 0, num_actions)
            return step_fn(k_step, state, action), None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, steps))
        return state

    return jax.jit(run)


def _measure(name: str, run, state, args: Args, between=lambda s: s) -> dict:
    """Best of ``repeats`` timed calls; ``between(state)``, host work after each call, is timed with it."""
    key = jax.random.PRNGKey(args.seed + 1)
    t0 = time.perf_counter()
    state = jax.block_until_ready(between(run(key, state)))
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for i in range(args.repeats):
        t0 = time.perf_counter()
        state = jax.block_until_ready(between(run(jax.random.fold_in(key, i), state)))
        best = min(best, time.perf_counter() - t0)
    sps = args.num_envs * args.steps / best
    print(f"{name:<34} {sps:>10,.0f} steps/s   (first call incl. compile {compile_s:5.1f} s)", flush=True)
    return {"name": name, "sps": sps, "compile_s": compile_s, "state": state}


def main(args: Args) -> None:
    jaxcache.enable()
    n = args.num_envs
    key = jax.random.PRNGKey(args.seed)
    world = worlds.get(args.env)
    a = world.num_actions
    print(f"{world.env_id}, {n} envs, {args.steps} steps per call, jax {jax.__version__}, {jax.devices()[0].platform}")

    raw_env = world.make_env()
    params = raw_env.default_params
    _, raw_state = jax.vmap(raw_env.reset_env, in_axes=(0, None))(jax.random.split(key, n), params)
    raw_step = jax.vmap(lambda k, s, a: raw_env.step_env(k, s, a, params)[1])
    raw = _measure("raw step (no reset)", _rollout(
        lambda k, s, a: raw_step(jax.random.split(k, n), s, a), n, args.steps, a), raw_state, args)

    auto_env = _auto_reset_env(world)
    auto_step = jax.vmap(lambda k, s, a: auto_env.step(k, s, a, params)[1])
    naive = _measure("naive auto-reset (craftax)", _rollout(
        lambda k, s, a: auto_step(jax.random.split(k, n), s, a), n, args.steps, a), raw_state, args)

    # A ring of fresh worlds as big as a call's steps can end episodes, refilled after each call
    # as training does (the refill's world generation is timed with the call).
    env = TaskEnv(VecEnv(n, reset_pool=n * args.steps // 16, world=world))
    bank = TaskBank.from_specs([x.spec for x in load_suite(world.suite, world=world)])
    _, task_state = env.reset(key, bank)
    refill = WorldRefill(env, jax.random.fold_in(key, 1), task_state)

    def between(state):
        refill.observe(state.vec.pool_next)
        return refill(state)

    ours = _measure("oir TaskEnv (counters + tasks)", _rollout(
        lambda k, s, a: env.step(k, s, a)[1], n, args.steps, a), task_state, args, between)
    print(f"  (worlds handed out twice, the ring having run dry: {int(ours['state'].vec.pool_reused)})")

    print(f"\noir / naive = {ours['sps'] / naive['sps']:.1f}x   (goal >= 8x)")
    print(f"oir / raw   = {ours['sps'] / raw['sps']:.2f}x  (goal >= 0.85x)")


if __name__ == "__main__":
    main(tyro.cli(Args))
