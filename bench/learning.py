"""Opt-in learning check: the no-relabel baseline, both learners, several seeds, long runs.

    .venv/bin/python bench/learning.py --steps 5000000 --seeds 0 1 --algos pqn ppo --out runs/learning

Runs ``oir train --relabel none`` for every (algo, seed) one after another (each uses the whole
machine), then prints a markdown table of final success on the standard suite's train and test
splits (mean and per seed). Finished runs (a ``summary.json`` in their dir) are reused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro


@dataclass
class Args:
    steps: int = 5_000_000
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    algos: list[str] = field(default_factory=lambda: ["pqn", "ppo"])
    num_envs: int = 64
    eval_episodes: int = 2
    out: Path = Path("runs/learning")


def main(args: Args) -> None:
    oir = Path(sys.executable).with_name("oir")
    summaries: dict[tuple[str, int], dict] = {}
    for algo in args.algos:
        for seed in args.seeds:
            run = args.out / f"{algo}-none-s{seed}"
            if not (run / "summary.json").exists():
                cmd = [str(oir), "train", "--algo", algo, "--relabel", "none", "--steps", str(args.steps),
                       "--num-envs", str(args.num_envs), "--seed", str(seed), "--out", str(run),
                       "--eval-episodes", str(args.eval_episodes)]
                print("$", " ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)
            summaries[algo, seed] = json.loads((run / "summary.json").read_text())

    print(f"\n{args.steps:,} env steps, {args.num_envs} envs, --relabel none, "
          f"final evaluation: {args.eval_episodes} episodes per suite line\n")
    print("| algo | seed | wall | train success | test success | coverage | paraphrase gap |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for algo in args.algos:
        rows = [summaries[algo, s] for s in args.seeds]
        for seed, s in zip(args.seeds, rows, strict=True):
            ev = s["eval"]
            print(f"| {algo} | {seed} | {s['wall_s'] / 60:.0f} min | {100 * ev['success_by_split']['train']:.1f}% "
                  f"| {100 * ev['success_by_split']['test']:.1f}% | {100 * ev['coverage']:.1f}% "
                  f"| {100 * (ev['paraphrase_gap'] or 0):+.1f} pts |")
        tr = [100 * s["eval"]["success_by_split"]["train"] for s in rows]
        te = [100 * s["eval"]["success_by_split"]["test"] for s in rows]
        print(f"| **{algo}** | mean ± std | | **{np.mean(tr):.1f} ± {np.std(tr):.1f}%** "
              f"| **{np.mean(te):.1f} ± {np.std(te):.1f}%** | | |")

    print("\nTraining success rate (instructions from the train split, exploration on), mean over seeds,"
          " by tenth of training:\n")
    print("| algo | " + " | ".join(f"{10 * (i + 1)}%" for i in range(10)) + " |")
    print("|---|" + "---:|" * 10)
    for algo in args.algos:
        curves = [training_curve(args.out / f"{algo}-none-s{seed}" / "metrics.jsonl") for seed in args.seeds]
        print(f"| {algo} | " + " | ".join(f"{100 * v:.1f}%" for v in np.mean(curves, axis=0)) + " |")


def training_curve(path: Path, bins: int = 10) -> np.ndarray:
    """Success rate over ended instructions, pooled within each tenth of the run."""
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    out = []
    for chunk in np.array_split(np.arange(len(rows)), bins):
        ended = sum(rows[i]["tasks_ended"] for i in chunk)
        won = sum(rows[i]["success_rate"] * rows[i]["tasks_ended"] for i in chunk)
        out.append(won / max(ended, 1))
    return np.array(out)


if __name__ == "__main__":
    main(tyro.cli(Args))
