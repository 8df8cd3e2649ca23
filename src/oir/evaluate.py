"""Evaluation: run a policy on every (suite line, episode) pair as one vectorized batch.

Each env carries its own line's task and starts in a fresh world. An episode ends when the task
succeeds, fails (a ``none`` clause, the order, the ``within`` budget), reaches ``max_steps``,
or the game ends. Steps run in jitted chunks; the host stops as soon as every episode has ended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from oir import tasks
from oir.env import NUM_ACTIONS, VecEnv
from oir.suites import SuiteLine

# policy(key, obs[N, obs_dim], line_index[N]) -> actions[N]. It gets the line index only to look
# up that line's instruction text embedding; never the spec.
Policy = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def random_policy(key: jax.Array, obs: jax.Array, line: jax.Array) -> jax.Array:
    return jax.random.randint(key, (obs.shape[0],), 0, NUM_ACTIONS)


def noop_policy(key: jax.Array, obs: jax.Array, line: jax.Array) -> jax.Array:
    return jnp.zeros((obs.shape[0],), jnp.int32)


@dataclass
class LineResult:
    line: SuiteLine
    successes: int = 0
    episodes: int = 0
    steps_to_success: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.successes / max(self.episodes, 1)


def _make_chunk(env: VecEnv, policy: Policy, chunk: int, max_steps: int):
    def run(carry, bank, line):
        def body(c, key):
            vec, obs, prog, ended, won, won_at = c
            k_act, k_env = jax.random.split(key)
            action = policy(k_act, obs, line)
            obs, vec, world = env.step(k_env, vec, action)
            prog, success, fail, _ = jax.vmap(tasks.progress_step)(bank, prog, world.events, world.levels)
            live = ~ended
            won_now = live & success
            won = won | won_now
            won_at = jnp.where(won_now, prog.t, won_at)
            ended = ended | success | fail | world.done | (prog.t >= max_steps)
            return (vec, obs, prog, ended, won, won_at), None

        key, carry = carry[0], carry[1:]
        key, sub = jax.random.split(key)
        carry, _ = jax.lax.scan(body, carry, jax.random.split(sub, chunk))
        return (key, *carry)

    return jax.jit(run)


def run_suite(
    lines: Sequence[SuiteLine],
    policy: Policy,
    *,
    episodes: int = 1,
    max_steps: int = 1000,
    seed: int = 0,
    chunk: int = 50,
) -> list[LineResult]:
    """Success of ``policy`` on every line, ``episodes`` fresh worlds each, in one batch."""
    if not lines:
        raise ValueError("the suite has no lines to evaluate")
    if episodes < 1 or max_steps < 1:
        raise ValueError("episodes and max_steps must be at least 1")
    n = len(lines) * episodes
    line = jnp.asarray(np.tile(np.arange(len(lines)), episodes), jnp.int32)
    bank = tasks.TaskBank.from_specs([x.spec for x in lines]).take(line)
    env = VecEnv(n)
    key, k_reset = jax.random.split(jax.random.PRNGKey(seed))
    obs, vec = jax.jit(env.reset)(k_reset)
    zeros = jnp.zeros(n, bool)
    carry = (key, vec, obs, tasks.progress_init((n,)), zeros, zeros, jnp.zeros(n, jnp.int32))
    step_chunk = _make_chunk(env, policy, chunk, max_steps)
    for _ in range(-(-max_steps // chunk)):
        carry = step_chunk(carry, bank, line)
        if bool(carry[4].all()):
            break
    won, won_at = np.asarray(carry[5]), np.asarray(carry[6])
    results = [LineResult(x) for x in lines]
    for i in range(n):
        r = results[i % len(lines)]
        r.episodes += 1
        if won[i]:
            r.successes += 1
            r.steps_to_success.append(int(won_at[i]))
    return results


@dataclass
class Summary:
    rows: list[tuple[str, int, int, float]]  # (group, tasks, lines, mean success)
    coverage: float  # fraction of tasks solved at least once
    paraphrase_gap: float | None  # canonical minus paraphrase success over tasks with both


def summarize(results: Sequence[LineResult], by: str = "category") -> Summary:
    """Mean success per ``by`` (a SuiteLine field), overall, coverage and paraphrase gap."""
    groups: dict[str, list[LineResult]] = defaultdict(list)
    for r in results:
        groups[getattr(r.line, by)].append(r)
    groups_all = {**dict(sorted(groups.items())), "all": list(results)}
    rows = [
        (name, len({r.line.task_id for r in rs}), len(rs), float(np.mean([r.rate for r in rs])))
        for name, rs in groups_all.items()
    ]
    solved: dict[str, bool] = defaultdict(bool)
    canon: dict[str, list[float]] = defaultdict(list)
    para: dict[str, list[float]] = defaultdict(list)
    for r in results:
        solved[r.line.task_id] |= r.successes > 0
        (para if r.line.paraphrase else canon)[r.line.task_id].append(r.rate)
    both = [t for t in canon if t in para]
    gap = (
        float(np.mean([np.mean(canon[t]) - np.mean(para[t]) for t in both])) if both else None
    )
    return Summary(rows, float(np.mean(list(solved.values()))), gap)
