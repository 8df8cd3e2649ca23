"""Data-parallel training over several devices with ``jax.sharding`` (``oir train --devices N``).

The envs are split across a 1-D mesh of ``N`` devices (axis ``envs``): every per-env array of the
runner (the worlds, their instructions and progress, the current observations, the replay of
recent steps) is sharded along its env axis, and everything else (parameters, optimizer state,
instruction tables, the pool of fresh worlds, RNG keys) is replicated. The learner's jitted update
is unchanged: XLA's SPMD partitioner runs each device's envs where they live and, because the
losses are means over the whole batch, all-reduces the gradients, so every device applies the
same averaged update to its replica of the parameters. The computation is the one of a single
device with the same total envs, up to the order of floating-point sums.

One host only, for now: the host side (segments, relabeling) reads every env's rollout, which on
several hosts would be spread over processes that cannot read each other's shards.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "envs"


class DeviceError(ValueError):
    """A device count this machine or config cannot run (one line for the user)."""


def make_mesh(devices: int, num_envs: int) -> Mesh:
    have = jax.devices()
    if devices > len(have):
        hint = (" (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N devices)"
                if have[0].platform == "cpu" else "")
        raise DeviceError(f"--devices {devices}: only {len(have)} {have[0].platform} device(s) here{hint}")
    if num_envs % devices:
        raise DeviceError(f"--num-envs ({num_envs}) must divide by --devices ({devices})")
    return Mesh(np.array(have[:devices]), (AXIS,))


def runner_shardings(runner, mesh: Mesh):
    """A sharding for every leaf of a :class:`~oir.learn.Runner`: per-env leaves split, the rest replicated."""
    rep, by_env = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    every = lambda tree, s: jax.tree.map(lambda _: s, tree)  # noqa: E731
    env = every(runner.env, rep)
    vec = env.vec.replace(env=every(runner.env.vec.env, by_env), episode_length=by_env)
    env = env.replace(vec=vec, task=by_env, progress=every(runner.env.progress, by_env))
    out = every(runner, rep).replace(env=env, obs=by_env)
    if runner.replay is not None:  # [history, envs, ...]
        out = out.replace(replay=every(runner.replay, NamedSharding(mesh, P(None, AXIS))))
    return out


def data_parallel(runner, update: Callable, mesh: Mesh):
    """``(runner, update)`` sharded over ``mesh``: the runner placed, and an update that keeps it so."""
    shardings = runner_shardings(runner, mesh)

    @partial(jax.jit, donate_argnums=0)
    def sharded(r, rb):
        r, metrics, chunk = update(r, rb)
        return jax.lax.with_sharding_constraint(r, shardings), metrics, chunk

    return jax.device_put(runner, shardings), sharded
