"""Tune PQN once: one option at a time around the defaults, each an ``oir compare`` run.

    .venv/bin/python bench/pqn_sweep.py --steps 2000000 --method narrator --out runs/pqn-sweep

Each row changes one group of PQN options (learning rate, Q(lambda)'s lambda, epochs x
minibatches, envs x steps per update) and trains ``--method`` with it through ``oir compare``,
so every row is evaluated exactly like the method comparisons in docs/results.md (test split,
held-out tasks first). Finished rows are reused (compare's own reuse), so an interrupted sweep
goes on where it stopped. Prints one markdown table; a row that failed says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parents[1]

# name -> extra `oir compare` flags; "default" is the PQNConfig defaults.
ROWS: dict[str, list[str]] = {
    "default": [],
    "lr 1e-4": ["--train.pqn.lr", "1e-4"],
    "lr 1e-3": ["--train.pqn.lr", "1e-3"],
    "lambda 0.3": ["--train.pqn.lam", "0.3"],
    "lambda 0.8": ["--train.pqn.lam", "0.8"],
    "epochs 1 x mb 4": ["--train.pqn.num-epochs", "1"],
    "epochs 4 x mb 8": ["--train.pqn.num-epochs", "4", "--train.pqn.num-minibatches", "8"],
    "envs 128 x steps 16": ["--train.num-envs", "128"],
    "envs 64 x steps 32": ["--train.pqn.num-steps", "32"],
}


@dataclass
class Args:
    steps: int = 2_000_000
    method: str = "narrator"
    seeds: str = "0"
    out: Path = Path("runs/pqn-sweep")
    rows: list[str] = field(default_factory=lambda: list(ROWS))  # which rows to run, by name


def slug(name: str) -> str:
    return name.replace(" ", "").replace("x", "-")


def held_out(run_dirs: list[Path]) -> dict[str, float]:
    """Mean success over seeds on the test split's held-out tasks / paraphrases / all lines."""
    rows = [json.loads((d / "eval-test.json").read_text())["success_by_holdout"] for d in run_dirs]
    return {k: 100 * sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def main(args: Args) -> int:
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        print(f"pqn_sweep: error: unknown rows {unknown}; choose from {list(ROWS)}", file=sys.stderr)
        return 2
    table = ["| PQN options | held-out tasks % | held-out paraphrases % | all test lines % | wall s |",
             "|---|---:|---:|---:|---:|"]
    for name in args.rows:
        out = args.out / slug(name)
        cmd = [sys.executable, "-m", "oir.cli", "compare", "--methods", args.method, "--algo", "pqn",
               "--steps", str(args.steps), "--seeds", args.seeds, "--out", str(out),
               # the sweep's settings, from before the bonus and spans were defaults
               "--train.achievement-bonus", "0", "--train.relabeling.world-span", "0", *ROWS[name]]
        print("$", " ".join(cmd[2:]), flush=True)
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        runs = sorted(out.glob(f"{args.method}-s*"))
        if rc != 0 or not runs or not all((d / "eval-test.json").exists() for d in runs):
            table.append(f"| {name} | failed (exit {rc}) | | | |")
            continue
        s = held_out(runs)
        wall = sum(json.loads((d / "summary.json").read_text())["wall_s"] for d in runs) / len(runs)
        table.append(f"| {name} | {s['held-out task']:.1f} | {s['held-out paraphrase']:.1f} | "
                     f"{s['all']:.1f} | {wall:.0f} |")
        print("\n".join(table), flush=True)
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
