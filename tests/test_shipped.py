"""The shipped agents (agents/NAME): checksums, provenance, and their recorded figure reproduced."""

from __future__ import annotations

import json
import shutil

import pytest

from oir.cli import main
from oir.shipped import AGENTS, PARAMS, is_agent, provenance, sha256

SHIPPED = sorted(p for p in AGENTS.iterdir() if is_agent(p)) if AGENTS.is_dir() else []


def test_an_oir_agent_and_a_no_relabel_agent_are_shipped_for_the_same_steps():
    provs = [provenance(p) for p in SHIPPED]
    kinds = {p["relabel"] != "none" for p in provs}
    assert kinds == {True, False}, "agents/ must hold an OIR agent and a no-relabel one"
    assert len({p["env_steps"] for p in provs}) == 1 and len({p["algo"] for p in provs}) == 1
    assert sum((p / PARAMS).stat().st_size for p in SHIPPED) < 8e6  # a few MB in all


@pytest.mark.parametrize("agent", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_params_match_the_sha256_of_their_provenance(agent):
    prov = provenance(agent)
    assert sha256(agent / PARAMS) == prov["sha256"]
    for key in ("command", "commit", "env_steps", "eval"):
        assert prov[key], key
    assert prov["command"].startswith("oir ") and len(prov["commit"]) >= 7


@pytest.mark.parametrize("agent", SHIPPED, ids=[p.name for p in SHIPPED])
def test_oir_eval_reproduces_the_recorded_figure(agent, tmp_path):
    fig = provenance(agent)["eval"]
    out = tmp_path / "eval.json"
    assert main(["eval", "--run", str(agent), "--split", fig["split"], "--episodes", str(fig["episodes"]),
                 "--max-steps", str(fig["max_steps"]), "--seed", str(fig["seed"]), "--out", str(out)]) == 0
    got = json.loads(out.read_text())["success_by_split"]["all"]
    assert abs(got - fig["success"]) <= 0.03, f"{agent.name}: {got:.3f} against the recorded {fig['success']:.3f}"


def test_a_damaged_agent_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(SHIPPED[0], bad)
    data = bytearray((bad / PARAMS).read_bytes())
    data[-1] ^= 1
    (bad / PARAMS).write_bytes(bytes(data))
    assert main(["eval", "--run", str(bad), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is damaged: sha256" in err[0]


def test_oir_export_ships_a_run_that_oir_eval_then_measures_the_same(tmp_path):
    run, agent = tmp_path / "run", tmp_path / "agents" / "tiny"
    assert main(["train", "--out", str(run), "--encoder", "hash", "--num-envs", "8", "--steps", str(8 * 16 * 24),
                 "--max-task-steps", "32", "--pqn.num-minibatches", "2", "--eval-episodes", "0",
                 "--algo", "pqn", "--relabel", "none", "--achievement-bonus", "0"]) == 0
    assert main(["export", "--run", str(run), "--out", str(agent), "--command", "oir train (tiny)",
                 "--commit", "0000000", "--max-steps", "20"]) == 0
    prov = provenance(agent)
    assert prov["sha256"] == sha256(agent / PARAMS) and prov["method"] == "no-relabel" and prov["env_steps"] == 3072
    assert not (agent / "checkpoint").exists() and is_agent(agent)
    out = tmp_path / "eval.json"
    assert main(["eval", "--run", str(agent), "--episodes", "1", "--max-steps", "20", "--seed", "10000",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["success_by_split"]["all"] == prov["eval"]["success"]
