"""Competence reference: what standard PPO learns from Craftax's own reward in our env-step budget.

    .venv/bin/python bench/peer_competence.py --cb-dir /tmp/cb --cb-path /tmp/cbextra \\
        --steps 5000000 --num-envs 64 --seed 0 --out runs/cb-competence

Our agents are rewarded only for the instruction they were given. Craftax_Baselines' ``ppo.py`` is
rewarded (+1) for every achievement the first time in an episode: the densest signal there is
for mining stone or eating a cow. If it does not reach an achievement in our budget, no choice of
instructions will make our agents reach it on command in that budget either.

It runs as a subprocess from its own checkout (brought here with the search tool's ``fetch``;
never vendored), with its defaults but the env (Classic-Symbolic), env count, steps and seed. The
script reports its per-episode achievement rates only through wandb, so a small local stand-in
for ``wandb`` (written to a temp dir here, put first on the child's path) keeps each logged dict
as one JSON line. Its logged rate is the share of the episodes finished in an update's rollout in
which the achievement happened, from the training policy (it samples its actions).

``--cb-path``: a directory with the peer's own extra dependencies installed by
``pip install --target DIR --no-deps distrax chex tfp-nightly dm-tree six absl-py gast decorator
cloudpickle toolz`` (tensorflow-probability 0.25 does not import under our JAX; the nightly does); the
rest (JAX, Flax, optax, orbax, craftax) comes from the interpreter, ours by default.

Writes ``OUT/log.jsonl`` (every update) and ``OUT/summary.json``, and prints a table of the
achievement rates averaged over the last 10% of the env steps before each of the given marks.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro
from peers import CB_NUM_STEPS, CB_SCRIPT, ENV_NAME, _child_env, _run

# Writes every wandb.log(...) as one JSON line of floats; init() and run.dir are all ppo.py needs.
_WANDB_STAND_IN = '''
import json, os
import numpy as np
class _Run:
    dir = os.environ.get("TMPDIR", "/tmp")
run = _Run()
_out = None
def init(*args, **kwargs):
    global _out
    _out = open(os.environ["OIR_PEER_LOG"], "a")
    return run
def log(data, step=None, **kwargs):
    if _out is None:
        init()
    row = {}
    for key, value in data.items():
        try:
            row[key] = float(np.asarray(value).mean())
        except (TypeError, ValueError):
            pass
    _out.write(json.dumps(row) + "\\n")
    _out.flush()
'''


@dataclass
class Args:
    cb_dir: Path = Path("/tmp/cb")  # Craftax_Baselines checkout
    cb_path: Path = Path("/tmp/cbextra")  # its extra dependencies (see the module docstring)
    python: Path = Path(sys.executable)
    steps: int = 5_000_000
    num_envs: int = 64
    seed: int = 0
    out: Path = Path("runs/cb-competence")
    marks: list[int] = field(default_factory=lambda: [500_000, 1_000_000, 2_000_000, 5_000_000])


def summarize(rows: list[dict], steps_per_row: int, marks: list[int]) -> dict[int, dict[str, float]]:
    """Per mark: each achievement's mean logged rate (%) over the rows in the last 10% of steps
    before it (at least one row); marks past the end of the log are left out."""
    out = {}
    for mark in marks:
        end = mark // steps_per_row
        if end > len(rows) or end == 0:
            continue
        chunk = rows[max(0, end - max(1, end // 10)) : end]
        keys = [k for k in chunk[0] if k.startswith("Achievements/")]
        out[mark] = {k.split("/", 1)[1]: float(np.mean([r[k] for r in chunk if k in r])) for k in keys}
        out[mark]["episode_return"] = float(np.mean([r["episode_return"] for r in chunk]))
    return out


def main(args: Args) -> int:
    if not (args.cb_dir / CB_SCRIPT).is_file():
        print(f"peer_competence: {args.cb_dir / CB_SCRIPT} not found (fetch Craftax_Baselines there)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.jsonl"
    log.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="wandb_stand_in_") as shim:
        (Path(shim) / "wandb").mkdir()
        (Path(shim) / "wandb" / "__init__.py").write_text(_WANDB_STAND_IN)
        env = _child_env()
        env["PYTHONPATH"] = os.pathsep.join([shim, str(args.cb_path), str(args.cb_dir)])
        env["OIR_PEER_LOG"] = str(log.resolve())
        cmd = [str(args.python), CB_SCRIPT, "--env_name", ENV_NAME, "--num_envs", str(args.num_envs),
               "--total_timesteps", str(args.steps), "--seed", str(args.seed), "--use_wandb"]
        # The whole subprocess, timed and its failure cut to a tail, as the speed benchmark's peers.
        result = _run("cb_ppo", cmd, args.cb_dir, env, args.steps, timeout_s=86400.0)
    if not result["ok"]:
        print(f"peer_competence: ppo.py failed, {result['error']}", file=sys.stderr)
        return 1
    wall = result["wall_s"]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    per_row = CB_NUM_STEPS * args.num_envs
    table = summarize(rows, per_row, args.marks)
    summary = {"command": cmd[1:], "env_steps": len(rows) * per_row, "wall_s": wall, "by_mark": table}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    names = sorted({k for rates in table.values() for k in rates if k != "episode_return"})
    print("achievement (% of episodes) | " + " | ".join(f"{m / 1e6:g}M" for m in table))
    for name in names:
        print(f"{name} | " + " | ".join(f"{table[m][name]:.1f}" for m in table))
    print("episode return | " + " | ".join(f"{table[m]['episode_return']:.2f}" for m in table))
    print(f"{len(rows) * per_row:,} env steps in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
