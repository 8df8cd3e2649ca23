"""Opt-in learning check: OIR (narrator relabeler) against the no-relabel baseline, several seeds.

    .venv/bin/python bench/learning.py --steps 5000000 --seeds 0 1 --algos pqn --relabels none narrator

Runs ``oir train --relabel R`` for every (algo, relabel, seed) one after another (each uses the
whole machine), then prints a markdown table of final success on the standard suite's train and
test splits (mean and per seed) and the number of unique instructions OIR learned from. Finished
runs (a ``summary.json`` in their dir) are reused. OIR runs never see the suite in training; the
baseline trains on its train split.
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
    relabels: list[str] = field(default_factory=lambda: ["none", "narrator"])
    num_envs: int = 64
    eval_episodes: int = 2
    out: Path = Path("runs/learning")


def main(args: Args) -> None:
    oir = Path(sys.executable).with_name("oir")
    summaries: dict[tuple[str, str, int], dict] = {}
    methods = [(a, r) for a in args.algos for r in args.relabels]
    for algo, relabel in methods:
        for seed in args.seeds:
            run = args.out / f"{algo}-{relabel}-s{seed}"
            if not (run / "summary.json").exists():
                cmd = [str(oir), "train", "--algo", algo, "--relabel", relabel, "--steps", str(args.steps),
                       "--num-envs", str(args.num_envs), "--seed", str(seed), "--out", str(run),
                       "--eval-episodes", str(args.eval_episodes)]
                print("$", " ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)
            summaries[algo, relabel, seed] = json.loads((run / "summary.json").read_text())

    print(f"\n{args.steps:,} env steps, {args.num_envs} envs, "
          f"final evaluation: {args.eval_episodes} episodes per suite line\n")
    print("| algo | relabel | seed | wall | train success | test success | coverage | paraphrase gap | unique instructions |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for algo, relabel in methods:
        rows = [summaries[algo, relabel, s] for s in args.seeds]
        for seed, s in zip(args.seeds, rows, strict=True):
            ev = s["eval"]
            uniq = s.get("relabeling", {}).get("unique_instructions", "")
            print(f"| {algo} | {relabel} | {seed} | {s['wall_s'] / 60:.0f} min "
                  f"| {100 * ev['success_by_split']['train']:.1f}% | {100 * ev['success_by_split']['test']:.1f}% "
                  f"| {100 * ev['coverage']:.1f}% | {100 * (ev['paraphrase_gap'] or 0):+.1f} pts | {uniq} |")
        tr = [100 * s["eval"]["success_by_split"]["train"] for s in rows]
        te = [100 * s["eval"]["success_by_split"]["test"] for s in rows]
        print(f"| **{algo}** | **{relabel}** | mean ± std | | **{np.mean(tr):.1f} ± {np.std(tr):.1f}%** "
              f"| **{np.mean(te):.1f} ± {np.std(te):.1f}%** | | | |")

    print("\nTraining success rate on the instructions each run trains on (the suite's train split for"
          " none, its own relabels for OIR; exploration on), mean over seeds, by tenth of training:\n")
    print("| algo | relabel | " + " | ".join(f"{10 * (i + 1)}%" for i in range(10)) + " |")
    print("|---|---|" + "---:|" * 10)
    for algo, relabel in methods:
        curves = [training_curve(args.out / f"{algo}-{relabel}-s{seed}" / "metrics.jsonl") for seed in args.seeds]
        print(f"| {algo} | {relabel} | " + " | ".join(f"{100 * v:.1f}%" for v in np.mean(curves, axis=0)) + " |")


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
