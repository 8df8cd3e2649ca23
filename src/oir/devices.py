"""Data-parallel training over several devices with ``jax.sharding`` (``oir train --devices N``).

The envs are split across a 1-D mesh of ``N`` devices (axis ``envs``): every per-env array of the
runner (the worlds, their instructions and progress, the current observations, the replay of
recent steps) is sharded along its env axis, and everything else (parameters, optimizer state,
instruction tables, the pool of fresh worlds, RNG keys) is replicated. The learner's jitted update
is unchanged: XLA's SPMD partitioner runs each device's envs where they live and, because the
losses are means over the whole batch, all-reduces the gradients, so every device applies the
same averaged update to its replica of the parameters. The computation is the one of a single
device with the same total envs, up to the order of floating-point sums.

Several processes (hosts) join through JAX's own runtime (:func:`start_processes`,
``jax.distributed.initialize``): the mesh then spans every process's devices, and each process
runs the same program on its own. The host side is replicated, not split: the rollout chunk is
all-gathered in the update, so every process cuts and relabels every env's segments; with
relabeling made synchronous (deterministic), every process then holds the same instruction
buffer and draws the same relabeled windows, which is what SPMD needs of replicated inputs. No
broadcasts, and the host work per process is that of one host (``bench/host_pipeline.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from oir.errors import first_line

AXIS = "envs"


class DeviceError(ValueError):
    """A device count this machine or config cannot run (one line for the user)."""


def start_processes(coordinator: str, num_processes: int, process_id: int) -> None:
    """Join a run of several processes (``oir train --num-processes N``): JAX's distributed
    runtime, with gloo collectives between CPU processes (GPUs use NCCL on their own)."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except Exception as e:  # XLA raises runtime errors of its own types for an unreachable coordinator
        raise DeviceError(f"cannot join the run at --coordinator {coordinator} as process {process_id} "
                          f"of {num_processes} ({first_line(e, typed=False, limit=200)})") from None


def to_host(tree):
    """numpy copies of a pytree's arrays. In a run of several processes an array may span them:
    a replicated one is read from this process's replica, a sharded one is all-gathered (every
    process must then call this at the same point, as they all run the same loop)."""
    leaves = jax.tree.leaves(tree)
    if all(not isinstance(x, jax.Array) or x.is_fully_addressable for x in leaves):
        return jax.device_get(tree)  # one process: one transfer for the whole tree

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def make_mesh(devices: int, num_envs: int) -> Mesh:
    have = jax.devices()
    if jax.process_count() > 1 and devices != len(have):
        raise DeviceError(f"--devices {devices}: a run of {jax.process_count()} processes spans all their "
                          f"{len(have)} devices; pass --devices {len(have)}")
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

    # Several processes: the chunk is gathered onto every device, so each process reads all of it.
    gather = NamedSharding(mesh, P()) if jax.process_count() > 1 else None

    @partial(jax.jit, donate_argnums=0)
    def sharded(r, rb):
        r, metrics, chunk = update(r, rb)
        if gather is not None:
            chunk = jax.lax.with_sharding_constraint(chunk, jax.tree.map(lambda _: gather, chunk))
        return jax.lax.with_sharding_constraint(r, shardings), metrics, chunk

    runner = jax.device_put(runner, shardings)
    if jax.process_count() == 1:
        return runner, sharded

    # Every process compiles the update on its own, seconds apart on a busy machine, and gloo
    # stops waiting for a peer to connect after about half a minute (a multi-process test failed
    # so, with both cores compiling). So each process compiles, all meet at the coordinator, and
    # only then does the first update, with its collectives, run.
    compiled = []

    def first_compiles(r, rb):
        if not compiled:
            compiled.append(sharded.lower(r, rb).compile())
            _barrier("oir-update-compiled")
        return compiled[0](r, rb)

    return runner, first_compiles


def _barrier(name: str, timeout_s: int = 1800) -> None:
    """Wait until every process of the run reaches ``name`` (the coordination service's barrier,
    not a collective: it has its own timeout)."""
    # The barrier has no public API yet; Orbax and JAX's own multi-process tests use this one.
    from jax._src import distributed

    distributed.global_state.client.wait_at_barrier(name, timeout_s * 1000)
