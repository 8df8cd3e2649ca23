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
from oir.suites import HELD_OUT_PARAPHRASE, HELD_OUT_TASK, SuiteLine

# policy(key, obs[N, obs_dim], line_index[N]) -> actions[N]. It gets the line index only to look
# up that line's instruction text embedding; never the spec.
Policy = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def random_policy_for(num_actions: int) -> Policy:
    """A uniformly random policy over a world's ``num_actions`` actions."""

    def act(key: jax.Array, obs: jax.Array, line: jax.Array) -> jax.Array:
        return jax.random.randint(key, (obs.shape[0],), 0, num_actions)

    return act


random_policy = random_policy_for(NUM_ACTIONS)  # Craftax-Classic's


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


def _make_chunk(env: VecEnv, policy: Callable, chunk: int, max_steps: int):
    """A jitted ``chunk``-step advance of every episode; ``policy(params, key, obs, line)``."""

    def run(carry, bank, line, params):
        def body(c, key):
            vec, obs, prog, ended, won, won_at = c
            k_act, k_env = jax.random.split(key)
            action = policy(params, k_act, obs, line)
            obs, vec, world = env.step(k_env, vec, action)
            prog, success, fail, _ = jax.vmap(tasks.progress_step)(bank, prog, world.events, world.levels)
            live = ~ended
            won_now = live & success
            won = won | won_now
            won_at = jnp.where(won_now, prog.t, won_at)
            # The default cap is for tasks without a budget; one with a budget fails at its end.
            cap = jnp.where(bank.within == tasks.NO_BUDGET, max_steps, tasks.NO_BUDGET)
            ended = ended | success | fail | world.done | (prog.t >= cap)
            return (vec, obs, prog, ended, won, won_at), None

        key, carry = carry[0], carry[1:]
        key, sub = jax.random.split(key)
        carry, _ = jax.lax.scan(body, carry, jax.random.split(sub, chunk))
        return (key, *carry)

    return jax.jit(run)


# Compiled chunks of TextPolicy runs, by (envs, act, chunk, max_steps): an evaluation repeated
# during training with new parameters reuses its compile.
_CHUNKS: dict[tuple, Callable] = {}


def run_suite(
    lines: Sequence[SuiteLine],
    policy: Policy,
    *,
    episodes: int = 1,
    max_steps: int = 1000,
    seed: int = 0,
    chunk: int = 50,
) -> list[LineResult]:
    """Success of ``policy`` on every line, ``episodes`` fresh worlds each, in one batch; an
    episode ends at its task's budget (``within``), or after ``max_steps`` when it has none."""
    if not lines:
        raise ValueError("the suite has no lines to evaluate")
    if episodes < 1 or max_steps < 1:
        raise ValueError("episodes and max_steps must be at least 1")
    n = len(lines) * episodes
    line = jnp.asarray(np.tile(np.arange(len(lines)), episodes), jnp.int32)
    bank = tasks.TaskBank.from_specs([x.spec for x in lines]).take(line)
    # A suite's specs are of one world (TaskBank checks). An episode ends with its world, so no env
    # needs a second one: a pool of one, never refilled.
    env = VecEnv(n, reset_pool=1, world=lines[0].spec.world)
    key, k_reset = jax.random.split(jax.random.PRNGKey(seed))
    obs, vec = env.reset(k_reset)
    zeros = jnp.zeros(n, bool)
    carry = (key, vec, obs, tasks.progress_init((n,), env.world.num_events), zeros, zeros, jnp.zeros(n, jnp.int32))
    if isinstance(policy, TextPolicy):
        key_ = (env.world.name, n, policy.act, chunk, max_steps)
        if key_ not in _CHUNKS:
            act = policy.act
            _CHUNKS[key_] = _make_chunk(env, lambda pe, k, o, ln: act(pe[0], k, o, pe[1][ln]), chunk, max_steps)
        step_chunk, params = _CHUNKS[key_], (policy.params, policy.emb)
    else:
        step_chunk, params = _make_chunk(env, lambda _, k, o, ln: policy(k, o, ln), chunk, max_steps), ()
    horizon = max([max_steps, *(x.spec.within or 0 for x in lines)])  # a budget may exceed the cap
    for _ in range(-(-horizon // chunk)):
        carry = step_chunk(carry, bank, line, params)
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
    paraphrase_ratio: float | None  # paraphrase over canonical success, same tasks (None if 0/0)
    mean_steps_to_success: float | None

    def describe(self) -> str:
        """Coverage, the paraphrase figures and steps to success, in one line."""
        para = "paraphrases: n/a (no task has both)"
        if self.paraphrase_gap is not None:
            ratio = "n/a" if self.paraphrase_ratio is None else f"{100 * self.paraphrase_ratio:.0f}%"
            para = (f"paraphrase success {ratio} of canonical "
                    f"(canonical - paraphrase {100 * self.paraphrase_gap:+.1f} pts)")
        steps = "n/a" if self.mean_steps_to_success is None else f"{self.mean_steps_to_success:.0f}"
        return (f"coverage {100 * self.coverage:.1f}% of tasks solved at least once; {para}; "
                f"mean steps to success {steps}")


def summarize(results: Sequence[LineResult], by: str = "category") -> Summary:
    """Mean success per ``by`` (category, split, task or line), overall, coverage and paraphrase gap."""
    field = {"task": "task_id", "line": "id"}.get(by, by)  # or category, split, holdout
    groups: dict[str, list[LineResult]] = defaultdict(list)
    for r in results:
        groups[getattr(r.line, field)].append(r)
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
    gap = ratio = None
    if both:
        c, p = (np.array([np.mean(d[t]) for t in both]) for d in (canon, para))
        gap = float(np.mean(c - p))
        ratio = float(p.mean() / c.mean()) if c.mean() > 0 else None
    steps = [x for r in results for x in r.steps_to_success]
    return Summary(rows, float(np.mean(list(solved.values()))), gap, ratio,
                   float(np.mean(steps)) if steps else None)


def holdout_line(results: Sequence[LineResult]) -> str:
    """Success on held-out tasks, then on held-out paraphrases (and train lines), in one line."""
    rows = {name: (tasks, lines, rate) for name, tasks, lines, rate in summarize(results, "holdout").rows}
    parts = [f"{name}s {100 * rows[name][2]:.1f}% ({rows[name][0]} tasks, {rows[name][1]} lines)"
             for name in (HELD_OUT_TASK, HELD_OUT_PARAPHRASE, "train") if name in rows]
    return "; ".join(parts)


def report(results: Sequence[LineResult]) -> dict:
    """Everything a results.json holds: per line, per task, per category and split, coverage,
    the paraphrase gap and steps to success."""
    by_task: dict[str, list[LineResult]] = defaultdict(list)
    for r in results:
        by_task[r.line.task_id].append(r)

    def steps(rs: Sequence[LineResult]) -> float | None:
        s = [x for r in rs for x in r.steps_to_success]
        return float(np.mean(s)) if s else None

    by_category, by_split = summarize(results, "category"), summarize(results, "split")
    return {
        # Held-out tasks first: a no-relabel learner trained on the exact spec of every held-out
        # paraphrase, so only held-out tasks compare it fairly with OIR.
        "success_by_holdout": {name: rate for name, _, _, rate in summarize(results, "holdout").rows},
        "success_by_split": {name: rate for name, _, _, rate in by_split.rows},
        "success_by_category": {name: rate for name, _, _, rate in by_category.rows},
        "coverage": by_split.coverage,
        "paraphrase_gap": by_split.paraphrase_gap,
        "paraphrase_ratio": by_split.paraphrase_ratio,
        "mean_steps_to_success": steps(results),
        "tasks": [
            {"task_id": t, "category": rs[0].line.category, "spec": rs[0].line.spec.to_json(), "lines": len(rs),
             "success": float(np.mean([r.rate for r in rs])), "solved": any(r.successes for r in rs),
             "mean_steps_to_success": steps(rs)}
            for t, rs in by_task.items()
        ],
        "lines": [
            {"id": r.line.id, "task_id": r.line.task_id, "text": r.line.text, "category": r.line.category,
             "split": r.line.split, "holdout": r.line.holdout, "paraphrase": r.line.paraphrase,
             "successes": r.successes,
             "episodes": r.episodes, "steps_to_success": r.steps_to_success}
            for r in results
        ],
    }


@dataclass(frozen=True)
class TextPolicy:
    """A learner's ``act`` with its parameters and the embedding of every line's text.

    Callable like any :data:`Policy`; :func:`run_suite` passes ``params`` and ``emb`` to its
    compiled step as arguments, so new parameters do not recompile it.
    """

    act: Callable
    params: object
    emb: jax.Array

    def __call__(self, key, obs, line):
        return self.act(self.params, key, obs, self.emb[line])


def text_policy(act: Callable, params, emb) -> TextPolicy:
    """A suite-run policy from a learner's ``act`` and the embedding of every line's text."""
    return TextPolicy(act, params, jnp.asarray(emb))
