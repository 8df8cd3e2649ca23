"""Shared fixtures. Compiled functions live at session scope: a Craftax jit costs 5-40 s."""

from __future__ import annotations

import jax
import pytest

from oir import jaxcache

jaxcache.enable()


@pytest.fixture(scope="session")
def craftax_env():
    from craftax.craftax_classic.envs.craftax_symbolic_env import (
        CraftaxClassicSymbolicEnvNoAutoReset,
    )

    return CraftaxClassicSymbolicEnvNoAutoReset()


@pytest.fixture(scope="session")
def single_step(craftax_env):
    """jit(step_with_events) for one env: (key, state, action) -> (obs, state, reward, done, events, levels)."""
    from oir.events import step_with_events

    params = craftax_env.default_params
    return jax.jit(lambda k, s, a: step_with_events(craftax_env, k, s, a, params))


@pytest.fixture(scope="session")
def fresh_world(craftax_env):
    _, state = jax.jit(craftax_env.reset_env, static_argnums=())(jax.random.PRNGKey(0), craftax_env.default_params)
    return state


@pytest.fixture(scope="session")
def jax_eval():
    """jit of the JAX evaluator over a trace: ``(bank, events[T, E], levels[T, L]) -> [status, step,
    reason]`` of the bank's first spec at its first end (status 0 pending, 1 success, 2 fail), in
    any world (the event count comes from the trace)."""
    import jax.numpy as jnp

    from oir import tasks

    def run(bank, events, levels):
        spec = bank.take(0)

        def body(c, x):
            prog, ended, out = c
            prog, success, fail, reason = tasks.progress_step(spec, prog, *x)
            now = jnp.where(success, 1, jnp.where(fail, 2, 0))
            out = jnp.where(ended, out, jnp.stack([now, prog.t, reason]))  # the first end only: the evaluator stops there
            return (prog, ended | success | fail, out), None

        init = (tasks.progress_init((), events.shape[1]), jnp.asarray(False), jnp.zeros(3, jnp.int32))
        (_, _, out), _ = jax.lax.scan(body, init, (events, levels))
        return out

    return jax.jit(run)
