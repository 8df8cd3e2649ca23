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
