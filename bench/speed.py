"""Learner throughput: our PPO and PQN next to Craftax_Baselines' PPO and purejaxql's PQN, one run.

    .venv/bin/python bench/speed.py --cb-dir /tmp/cb --cb-python /tmp/cbvenv/bin/python \\
        --pjq-dir /tmp/pjq --pjq-python /tmp/pjqvenv/bin/python

Every row is one subprocess timed by wall clock from start to exit (start-up, compile and
training included), 262,144 env steps with 64 envs on Craftax-Classic-Symbolic by default. Our
runs get a fresh, empty JAX compilation cache and embedding cache, so they pay their compile and
every instruction embedding like the peers do. The ``--relabel narrator`` rows are the OIR loop
(segments, the narrator relabeler in its worker thread, verification, the instruction buffer,
relabeled windows in every PQN update); their share of wall time on the training thread is
printed beside them.
The peers come from checkouts brought here with the search tool's ``fetch`` (never vendored);
see ``bench/peers.py``. A peer whose checkout is missing is reported as skipped.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).parent))
from peers import _run, run_cb, run_peers

from oir import worlds

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    steps: int = 262_144
    num_envs: int = 64
    seed: int = 0
    cb_dir: Path = Path("/tmp/cb")  # Craftax_Baselines checkout (rows cb_ppo)
    cb_python: Path = Path("/tmp/cbvenv/bin/python")
    pjq_dir: Path = Path("/tmp/pjq")  # purejaxql checkout (rows pjq_pqn)
    pjq_python: Path = Path("/tmp/pjqvenv/bin/python")
    skip_peers: bool = False
    encoder: str = "minilm"
    env: str = "classic"  # the world: classic or full (full Craftax: oir PPO against Craftax_Baselines' PPO only)


def run_ours(name: str, extra: list[str], args: Args) -> dict:
    """``oir train`` as a subprocess, timed like the peers, with an empty compilation cache."""
    oir = Path(sys.executable).with_name("oir")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(oir), "train", "--steps", str(args.steps), "--num-envs", str(args.num_envs),
               "--seed", str(args.seed), "--encoder", args.encoder, "--eval-episodes", "0", "--env", args.env,
               "--out", f"{tmp}/run", *extra]
        env = {**os.environ, "OIR_JAX_CACHE": f"{tmp}/jax-cache", "XDG_CACHE_HOME": f"{tmp}/cache"}
        row = _run(name, cmd, ROOT, env, args.steps, timeout_s=3600)
        metrics = Path(f"{tmp}/run/metrics.jsonl")
        if row["ok"] and metrics.exists():
            last = json.loads(metrics.read_text().splitlines()[-1])
            row["loop_sps"] = last["sps"]  # env steps / training-loop seconds (no start-up)
            row["relabel_frac"] = last.get("relabel_wall_frac")
        return row


def main(args: Args) -> None:
    # The plain learners (no relabels, no bonus) are what the peers run; the OIR rows are the loop
    # as measured since it was built (PQN, zero labels) and `oir train`'s default (the oir preset).
    plain = ["--relabel", "none", "--achievement-bonus", "0"]
    if args.env != "classic":  # another world: the PPO rows against Craftax_Baselines' PPO there
        rows = [run_ours("oir PPO (small net)", ["--algo", "ppo", *plain], args)]
        if not args.skip_peers:
            rows.append(run_cb(args.cb_dir, args.cb_python, args.steps, args.num_envs, args.seed,
                               env_name=worlds.get(args.env).env_id))
        _print(rows, args)
        return
    rows = [
        run_ours("oir PPO (small net)", ["--algo", "ppo", *plain], args),
        run_ours("oir PQN (small net)", ["--algo", "pqn", *plain], args),
        run_ours("oir PQN --relabel narrator", ["--algo", "pqn", "--relabel", "narrator", "--labels", "0",
                                                "--achievement-bonus", "0", "--relabeling.world-span", "0"], args),
        run_ours("oir train default (oir preset, PPO)", [], args),
        # purejaxql's craftax config does one epoch of one minibatch per update: same work here.
        run_ours("oir PQN (purejaxql net, 4x1024 LN)", ["--algo", "pqn", *plain, "--network", "purejaxql",
                                                       "--pqn.num-epochs", "1", "--pqn.num-minibatches", "1"], args),
    ]
    if not args.skip_peers:
        rows += run_peers(args.cb_dir, args.cb_python, args.pjq_dir, args.pjq_python,
                          steps=args.steps, num_envs=args.num_envs, seed=args.seed)
    _print(rows, args)


def _print(rows: list[dict], args: Args) -> None:
    print(f"\n{worlds.get(args.env).env_id}, {args.steps:,} env steps, {args.num_envs} envs, wall clock per process "
          "(compile included)")
    print(f"{'run':<40} {'env steps':>10} {'wall s':>8} {'steps/s':>9} {'loop steps/s':>13} {'relabel share':>14}")
    for r in rows:
        status = f"  ({r['note']})" if r.get("note") else "" if r["ok"] else f"  FAILED: {r['error']}"
        wall, sps = r["wall_s"] or 0.0, r["sps"] or 0.0
        loop = f"{r['loop_sps']:>13,.0f}" if r.get("loop_sps") else f"{'':>13}"
        share = f"{100 * r['relabel_frac']:>13.1f}%" if r.get("relabel_frac") is not None else ""
        print(f"{r['name']:<40} {r['steps']:>10,} {wall:>8.1f} {sps:>9,.0f} {loop} {share}{status}")
    by = {r["name"]: r for r in rows if r["ok"]}
    base, oir = by.get("oir PQN (small net)"), by.get("oir PQN --relabel narrator")
    if base and oir:
        print(f"\nOIR loop (narrator) / no-relabel PQN = {oir['sps'] / base['sps']:.2f}x wall clock, "
              f"{oir['loop_sps'] / base['loop_sps']:.2f}x training loop  (goal >= 0.9x); relabel share of "
              f"wall time on the training thread {100 * oir['relabel_frac']:.1f}%  (goal <= 10%)")
    cb, pjq = by.get("cb_ppo"), by.get("pjq_pqn")
    if cb and "oir PPO (small net)" in by:
        print(f"\noir PPO / Craftax_Baselines PPO = {by['oir PPO (small net)']['sps'] / cb['sps']:.2f}x  (goal >= 1.0x)")
    if pjq and "oir PQN (purejaxql net, 4x1024 LN)" in by:
        ratio = by["oir PQN (purejaxql net, 4x1024 LN)"]["sps"] / pjq["sps"]
        print(f"oir PQN (same net) / purejaxql PQN = {ratio:.2f}x  (goal >= 1.0x)")


if __name__ == "__main__":
    main(tyro.cli(Args))
