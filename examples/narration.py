"""Print narrations of real Craftax segments (random agent): the text the relabeler reads.

    .venv/bin/python examples/narration.py --num-envs 16 --steps 150 --show 3

Steps ``num_envs`` envs with random actions, cuts each env's first ``steps`` steps (or up to its
death) into a segment, and prints the ``show`` segments with the most kinds of events.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
import tyro

from oir import jaxcache
from oir.env import NUM_ACTIONS, VecEnv
from oir.events import levels_of
from oir.narrate import Segment, narrate_batch, nearby_from_obs


@dataclass
class Args:
    num_envs: int = 16
    steps: int = 150
    show: int = 3
    seed: int = 0


def main(args: Args) -> None:
    jaxcache.enable()
    env = VecEnv(args.num_envs)

    @jax.jit
    def rollout(key, obs, state):
        start = (jax.vmap(levels_of)(state.env), nearby_from_obs(obs))

        def body(carry, k):
            obs, state = carry
            k_act, k_env = jax.random.split(k)
            action = jax.random.randint(k_act, (env.num_envs,), 0, NUM_ACTIONS)
            obs, state, out = env.step(k_env, state, action)
            return (obs, state), (out.events, out.levels, nearby_from_obs(obs), out.done)

        _, trace = jax.lax.scan(body, (obs, state), jax.random.split(key, args.steps))
        return start, trace

    key = jax.random.PRNGKey(args.seed)
    obs, state = env.reset(key)  # fresh worlds come from the host (oir.env.VecEnv.reset)
    (lv0, nb0), (events, levels, nearby, done) = jax.tree.map(np.asarray, rollout(key, obs, state))
    segments = []
    for i in range(args.num_envs):
        ends = np.flatnonzero(done[:, i])
        t = int(ends[0]) + 1 if len(ends) else args.steps
        segments.append(Segment(
            events=events[:t, i],
            levels=np.concatenate([lv0[None, i], levels[:t, i]]),
            nearby=np.concatenate([nb0[None, i], nearby[:t, i]]),
            ended=bool(len(ends)),
        ))
    richest = sorted(segments, key=lambda s: -int((s.events[:, :22].sum(0) > 0).sum()))[: args.show]
    for text in narrate_batch(richest):
        print(text, end="\n\n")


if __name__ == "__main__":
    main(tyro.cli(Args))
