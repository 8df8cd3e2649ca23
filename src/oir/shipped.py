"""Trained agents shipped in the repo (``agents/NAME/``): small, checksummed, with provenance.

An agent dir holds:

* ``config.json``: the :class:`~oir.train.TrainConfig` of the run that trained it;
* ``params.npz``: the policy's parameters as float16 (half of float32's size; the figure in the
  provenance is measured on these very weights), keyed by their path in the parameter tree;
* ``provenance.json``: the command and commit that trained it, its env steps, the sha256 of
  ``params.npz``, and its success on the suite with every setting needed to reproduce it.

``oir eval``, ``oir play`` and ``oir demo`` take an agent dir wherever they take a run dir
(:mod:`oir.policy` loads both). ``oir export`` makes one from a finished run and measures it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

AGENTS = Path(__file__).resolve().parents[2] / "agents"
PARAMS = "params.npz"
PROVENANCE = "provenance.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def is_agent(path: Path) -> bool:
    return (Path(path) / PARAMS).is_file()


def load_agent_params(agent_dir: Path) -> dict:
    """The parameter tree (float32) of a shipped agent; ValueError if its sha256 does not match."""
    agent_dir = Path(agent_dir)
    prov = json.loads((agent_dir / PROVENANCE).read_text())
    got = sha256(agent_dir / PARAMS)
    if got != prov["sha256"]:
        raise ValueError(f"{agent_dir / PARAMS} is damaged: sha256 {got[:12]}... is not the "
                         f"{prov['sha256'][:12]}... of {agent_dir / PROVENANCE}")
    from flax.traverse_util import unflatten_dict

    with np.load(agent_dir / PARAMS) as arrays:
        return unflatten_dict({k: arrays[k].astype(np.float32) for k in arrays.files}, sep="/")


def write_agent(run_dir: Path, out: Path, command: str, commit: str) -> dict:
    """Write the agent dir ``out`` from a finished run (its figure comes later, from
    :func:`record_eval`); returns the provenance."""
    from flax.traverse_util import flatten_dict

    from oir.checkpoint import load_params

    run_dir, out = Path(run_dir), Path(out)
    from oir.train import migrate

    run_cfg = migrate(json.loads((run_dir / "config.json").read_text()), str(run_dir / "config.json"))
    summary = json.loads((run_dir / "summary.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    params = flatten_dict(load_params(run_dir), sep="/")
    np.savez(out / PARAMS, **{k: np.asarray(v, np.float16) for k, v in params.items()})
    # Paths of the machine that trained it mean nothing here: the standard suite, this dir.
    run_cfg.update(out=str(out), suite="suites/standard.jsonl", eval_suite="suites/standard.jsonl")
    (out / "config.json").write_text(json.dumps(run_cfg, indent=1) + "\n")
    method = "no-relabel" if run_cfg["relabel"] == "none" else \
        run_cfg["relabel"] + ("+suite" if run_cfg["labels"] > 0 else "")
    prov = {"name": out.name, "algo": run_cfg["algo"], "relabel": run_cfg["relabel"], "method": method,
            "command": command, "commit": commit, "env_steps": summary["env_steps"],
            "seed": run_cfg["seed"], "params": PARAMS, "params_dtype": "float16", "sha256": sha256(out / PARAMS)}
    (out / PROVENANCE).write_text(json.dumps(prov, indent=1) + "\n")
    return prov


def record_eval(agent_dir: Path, figure: dict) -> dict:
    """Add the measured ``figure`` (its settings, command and success) to the provenance."""
    path = Path(agent_dir) / PROVENANCE
    prov = {**json.loads(path.read_text()), "eval": figure}
    path.write_text(json.dumps(prov, indent=1) + "\n")
    return prov


def provenance(agent_dir: Path) -> dict:
    return json.loads((Path(agent_dir) / PROVENANCE).read_text())
