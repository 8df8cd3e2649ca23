"""Does the policy read the instruction? Success with the real texts against one fixed text.

    .venv/bin/python bench/instruction_control.py --runs runs/learning/pqn-none-s0 runs/learning/ppo-none-s0

For each run, evaluates the suite split twice on the same worlds (same seed): once with every
line's own text, once with every text replaced by ``--blind-text``. The task specs, and so the
rewards, are the same. A policy that ignores the instruction scores the same both ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import tyro

from oir import jaxcache
from oir.evaluate import run_suite, summarize
from oir.policy import policy_from_run
from oir.suites import STANDARD_SUITE, load_suite


@dataclass
class Args:
    runs: list[Path] = field(default_factory=list)
    suite: Path = STANDARD_SUITE
    split: str = "test"
    episodes: int = 2
    max_steps: int = 500
    seed: int = 0
    blind_text: str = "do something"


def main(args: Args) -> None:
    jaxcache.enable()
    lines = load_suite(args.suite, [args.split])
    blind = [replace(x, text=args.blind_text) for x in lines]
    print(f"{args.suite.name}, {args.split} split: {len(lines)} lines x {args.episodes} episodes, cap {args.max_steps}\n")
    print("| run | own instruction text | every text replaced by one fixed text | difference |")
    print("|---|---:|---:|---:|")
    for run in args.runs:
        rates = []
        for ls in (lines, blind):
            res = run_suite(ls, policy_from_run(run, [x.text for x in ls]), episodes=args.episodes,
                            max_steps=args.max_steps, seed=args.seed)
            rates.append(summarize(res).rows[-1][3])
        print(f"| {run.name} | {100 * rates[0]:.1f}% | {100 * rates[1]:.1f}% | {100 * (rates[0] - rates[1]):+.1f} pts |", flush=True)


if __name__ == "__main__":
    main(tyro.cli(Args))
