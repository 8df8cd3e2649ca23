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
