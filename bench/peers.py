"""Peer baselines, timed end to end: Craftax_Baselines PPO and purejaxql PQN on Craftax-Classic.

    .venv/bin/python bench/peers.py \\
        --cb-dir /tmp/cb --cb-python /tmp/cbvenv/bin/python \\
        --pjq-dir /tmp/pjq --pjq-python /tmp/pjqvenv/bin/python \\
        --steps 262144 --num-envs 64 --seed 0

Each peer runs as a subprocess from its own checkout with its own interpreter; none of their code
is imported or copied here. The timer wraps the WHOLE subprocess (interpreter start-up, imports,
tracing, XLA compile and training): Craftax_Baselines' printed SPS stops the clock before the
asynchronously dispatched computation ends, and purejaxql prints only a total that leaves out
start-up. Steps/s is therefore ``env steps / whole wall seconds``, a lower bound on throughput.
``JAX_COMPILATION_CACHE_DIR`` is dropped from the child environment, so peers compile cold, as
they do by default. Wandb is off for both.

* cb_ppo: ``ppo.py --env_name Craftax-Classic-Symbolic-v1 --num_envs N --total_timesteps S
  --no-use_wandb --seed K``, i.e. its defaults otherwise (64 steps per env per update, 4 epochs
  x 8 minibatches, 512-wide tanh MLP, optimistic resets), run through ``peer_barrier.py`` so that
  the process waits for its training (``ppo.py`` does not; on full Craftax it then crashed at exit
  with the training unfinished).
* pjq_pqn: ``purejaxql/pqn_craftax.py +alg=pqn_craftax`` with hydra overrides for the env,
  N envs x 16 steps per env per update, S total steps (also the length of the epsilon and LR
  decays, whose default horizon is 1e9 steps), no test envs, no saved params, and hydra's
  output directory in a throw-away temp dir. Network: its default 4 x 1024 LayerNorm MLP.

A peer whose checkout or interpreter is missing is skipped with ``ok=False`` and an error string.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENV_NAME = "Craftax-Classic-Symbolic-v1"
CB_SCRIPT = "ppo.py"
BARRIER = Path(__file__).with_name("peer_barrier.py")
CB_NUM_STEPS = 64  # ppo.py's default rollout length per env per update
PJQ_SCRIPT = "purejaxql/pqn_craftax.py"
PJQ_NUM_STEPS = 16  # rollout length per env per update, set by override
DEFAULT_TIMEOUT_S = 3600.0
_ERROR_TAIL_LINES = 15


def _result(name: str, steps: int, **kw: object) -> dict:
    out: dict = {"name": name, "steps": steps, "wall_s": None, "sps": None, "ok": False}
    out["error"] = None
    out.update(kw)
    return out


def _effective_steps(steps: int, num_envs: int, num_steps: int) -> int:
    """Env steps the peer really runs: both do ``total // num_steps // num_envs`` updates."""
    return (steps // num_steps // num_envs) * num_steps * num_envs


def _missing(checkout: Path, script: str, python: Path) -> str | None:
    """Why a peer cannot run, or None when its checkout, script and interpreter are all there."""
    if not checkout.is_dir():
        return f"checkout not found: {checkout}"
    if not (checkout / script).is_file():
        return f"script not found: {checkout / script}"
    if not python.is_file() or not os.access(python, os.X_OK):
        return f"python not found or not executable: {python}"
    return None


def _child_env(pythonpath: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["WANDB_MODE"] = "disabled"
    env["PYTHONUNBUFFERED"] = "1"
    if pythonpath is not None:
        parts = [str(pythonpath), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def _tail(text: str, n: int = _ERROR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _run(
    name: str,
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    steps: int,
    timeout_s: float,
    finished: str | None = None,
) -> dict:
    """Run ``cmd`` in ``cwd`` and time the whole subprocess, wall clock. ``finished``: a line the
    program prints once its training is over; killed by a signal after it, the run counts (with a
    note), since its work is done and its wall time runs to the crash."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        wall = time.perf_counter() - t0
        return _result(name, steps, wall_s=wall, error=f"timed out after {timeout_s:.0f} s")
    except OSError as e:
        return _result(name, steps, error=f"could not start {cmd[0]}: {e}")
    wall = time.perf_counter() - t0
    if proc.returncode < 0 and finished and finished in proc.stdout:
        return _result(name, steps, wall_s=wall, sps=steps / wall, ok=True,
                       note=f"finished, then killed by signal {-proc.returncode} at exit")
    if proc.returncode != 0:
        err = f"exit code {proc.returncode}:\n{_tail(proc.stderr or proc.stdout)}"
        return _result(name, steps, wall_s=wall, error=err)
    return _result(name, steps, wall_s=wall, sps=steps / wall, ok=True)


def run_cb(
    cb_dir: str | Path,
    cb_python: str | Path,
    steps: int = 262144,
    num_envs: int = 64,
    seed: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    env_name: str = ENV_NAME,
) -> dict:
    """Craftax_Baselines ``ppo.py`` (PPO, its defaults) on Craftax-Classic-Symbolic (or ``env_name``)."""
    name = "cb_ppo"
    cb_dir, cb_python = Path(cb_dir), Path(cb_python)
    eff = _effective_steps(steps, num_envs, CB_NUM_STEPS)
    if why := _missing(cb_dir, CB_SCRIPT, cb_python):
        return _result(name, eff, error=f"skipped, {why}")
    cmd = [
        str(cb_python), str(BARRIER), CB_SCRIPT,  # its clock and ours must cover the training: peer_barrier.py
        "--env_name", env_name,
        "--num_envs", str(num_envs),
        "--total_timesteps", str(steps),
        "--no-use_wandb",
        "--seed", str(seed),
    ]  # fmt: skip
    # On full Craftax ppo.py prints its result, then may die with SIGSEGV at exit (docs/performance.md).
    return _run(name, cmd, cb_dir, _child_env(), eff, timeout_s, finished="SPS: ")


def run_pjq(
    pjq_dir: str | Path,
    pjq_python: str | Path,
    steps: int = 262144,
    num_envs: int = 64,
    seed: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict:
    """purejaxql ``pqn_craftax.py`` (PQN, 4 x 1024 LayerNorm MLP) on Craftax-Classic-Symbolic."""
    name = "pjq_pqn"
    pjq_dir, pjq_python = Path(pjq_dir), Path(pjq_python)
    eff = _effective_steps(steps, num_envs, PJQ_NUM_STEPS)
    if why := _missing(pjq_dir, PJQ_SCRIPT, pjq_python):
        return _result(name, eff, error=f"skipped, {why}")
    with tempfile.TemporaryDirectory(prefix="pjq_hydra_") as hydra_dir:
        cmd = [
            str(pjq_python), PJQ_SCRIPT,
            "+alg=pqn_craftax",
            f"alg.ENV_NAME={ENV_NAME}",
            f"alg.NUM_ENVS={num_envs}",
            f"alg.NUM_STEPS={PJQ_NUM_STEPS}",
            f"alg.TOTAL_TIMESTEPS={steps}",
            f"alg.TOTAL_TIMESTEPS_DECAY={steps}",
            "alg.TEST_DURING_TRAINING=False",
            f"SEED={seed}",
            "NUM_SEEDS=1",
            "WANDB_MODE=disabled",
            "SAVE_PATH=null",
            f"hydra.run.dir={hydra_dir}",
            "hydra.output_subdir=null",
        ]  # fmt: skip
        return _run(name, cmd, pjq_dir, _child_env(pythonpath=pjq_dir), eff, timeout_s)


def run_peers(
    cb_dir: str | Path,
    cb_python: str | Path,
    pjq_dir: str | Path,
    pjq_python: str | Path,
    steps: int = 262144,
    num_envs: int = 64,
    seed: int = 0,
    *,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run both peers one after the other; one dict per peer.

    Keys: name, steps (env steps actually run), wall_s (whole subprocess; None if never started),
    sps (steps / wall_s; None unless ok), ok, error (None when ok, else why). ``on_result`` is
    called with each dict as soon as that peer finishes.
    """
    results = []
    for run_one, checkout, python in (
        (run_cb, cb_dir, cb_python),
        (run_pjq, pjq_dir, pjq_python),
    ):
        r = run_one(checkout, python, steps, num_envs, seed)
        if on_result is not None:
            on_result(r)
        results.append(r)
    return results


def format_row(r: dict) -> str:
    if r["ok"]:
        return f"{r['name']:<10} {r['steps']:>10,} steps  {r['wall_s']:8.1f} s  {r['sps']:>10,.0f} steps/s"
    wall = "" if r["wall_s"] is None else f" after {r['wall_s']:.1f} s"
    return f"{r['name']:<10} {r['steps']:>10,} steps  FAILED{wall}: {r['error']}"


@dataclass
class Args:
    cb_dir: Path = Path("/tmp/cb")  # Craftax_Baselines checkout
    cb_python: Path = Path("/tmp/cbvenv/bin/python")
    pjq_dir: Path = Path("/tmp/pjq")  # purejaxql checkout
    pjq_python: Path = Path("/tmp/pjqvenv/bin/python")
    steps: int = 262144  # total env steps per peer
    num_envs: int = 64
    seed: int = 0


def main(args: Args) -> int:
    print(f"{ENV_NAME}, {args.num_envs} envs, {args.steps:,} env steps, whole-process wall time")
    results = run_peers(
        args.cb_dir, args.cb_python, args.pjq_dir, args.pjq_python,
        steps=args.steps, num_envs=args.num_envs, seed=args.seed,
        on_result=lambda r: print(format_row(r), flush=True),
    )  # fmt: skip
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    import tyro

    sys.exit(main(tyro.cli(Args)))
