"""Data-parallel training (``oir train --devices N``) on this CPU's forced host devices.

The 2-device run is a subprocess: ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` must be
set before JAX starts. The 1-device runs are in this process, with the shapes of tests/test_oir.py
(their compiled updates come from the persistent cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from test_oir import TINY

from oir.checkpoint import load_params
from oir.cli import main

ARGS = [*TINY, "--relabel", "narrator", "--relabeling.synchronous", "--checkpoint-every", "1024"]
TIMING = ("sps", "wall_s", "relabel_wall_frac", "relabel_worker_frac", "texts_embedded")


def rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING}
            for x in (run / "metrics.jsonl").read_text().splitlines()]


def same_curve(a: list[dict], b: list[dict]) -> None:
    """Equal up to the order of floating-point sums (the gradients' all-reduce)."""
    assert len(a) == len(b) and [r.keys() for r in a] == [r.keys() for r in b]
    for ra, rb in zip(a, b, strict=True):
        for k, v in ra.items():
            assert np.isclose(v, rb[k], rtol=1e-4, atol=1e-6), (ra["update"], k, v, rb[k])


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("devices") / "d2"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_LOG_COMPILES": "1"}
    got = subprocess.run([sys.executable, "-m", "oir.cli", "train", "--out", str(out), *ARGS, "--devices", "2"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stderr[-2000:]
    # The ring's write compiles once, before training, for the sharded ring it writes into.
    assert got.stderr.count("Compiling jit(_write_chunk)") == 1
    return out


def test_two_devices_learn_the_same_curve_as_one_with_the_same_envs(two_devices, tmp_path):
    assert json.loads((two_devices / "summary.json").read_text())["devices"] == 2  # really sharded
    one = tmp_path / "d1"
    assert main(["train", "--out", str(one), *ARGS]) == 0
    assert json.loads((one / "summary.json").read_text())["devices"] == 1
    same_curve(rows(one), rows(two_devices))
    assert rows(one)[-1]["relabel_verified"] > 0
    # the final parameters of the 2-device run load here, on one device (oir eval, oir play)
    got, want = load_params(two_devices), load_params(one)
    assert jax.tree.all(jax.tree.map(lambda a, b: np.allclose(a, b, rtol=1e-4, atol=1e-6), got, want))


def test_a_two_device_checkpoint_resumes_on_one_device(two_devices, tmp_path, capsys):
    run = tmp_path / "resumed"
    shutil.copytree(two_devices, run)
    assert main(["train", "--resume", str(run), "--devices", "1"]) == 0
    assert f"resuming {run} after update 16" in capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_after_update"] == 16 and summary["devices"] == 1
    same_curve(rows(run), rows(two_devices))  # updates 17..24 redone on one device


def test_more_devices_than_there_are_is_one_line(tmp_path, capsys):
    n = len(jax.devices())
    assert main(["train", "--out", str(tmp_path / "x"), *TINY, "--devices", str(8 * n)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"oir: error: --devices {8 * n}: only {n} cpu device(s) here") and "\n" not in err
    assert main(["train", "--out", str(tmp_path / "y"), *TINY, "--devices", "3"]) == 2  # 8 envs
    assert capsys.readouterr().err.strip() == (
        "oir: error: --devices must be at least 1 and divide --num-envs (8), got 3")


def test_two_processes_learn_the_same_curve_as_one(tmp_path):
    # Two processes of one CPU device each, joined by JAX's distributed runtime (gloo), as two
    # hosts would be: each relabels every segment (the chunk is all-gathered), so both log the
    # same metrics, and those are the metrics of one process with the same total envs.
    from oir.llm_local import free_port

    args = [*ARGS[:ARGS.index("--checkpoint-every")], "--devices", "2", "--num-processes", "2",
            "--coordinator", f"127.0.0.1:{free_port()}"]
    out = tmp_path / "p2"
    env = {**os.environ, "XLA_FLAGS": ""}
    procs = [subprocess.Popen([sys.executable, "-m", "oir.launch", "train", "--out", str(out), *args,
                               "--process-id", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (1, 0)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-2000:]
    finally:
        for p in procs:
            p.kill()
    assert "2 processes: relabeling synchronously" in err  # process 0's, the last one waited for
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    one = tmp_path / "one"
    assert main(["train", "--out", str(one), *ARGS[:ARGS.index("--checkpoint-every")], "--checkpoint-every", "0"]) == 0
    assert rows(out) == rows(out / "process-1")  # the same host state in both processes
    same_curve(rows(one), rows(out))
    assert rows(one)[-1]["relabel_verified"] > 0
    got, want = load_params(out), load_params(one)  # written once, by both together
    assert jax.tree.all(jax.tree.map(lambda a, b: np.allclose(a, b, rtol=1e-4, atol=1e-6), got, want))


def test_several_processes_without_the_runtime_are_one_line(tmp_path, capsys):
    base = [*TINY, "--num-processes", "2", "--coordinator", "127.0.0.1:1"]
    assert main(["train", "--out", str(tmp_path / "a"), *base, "--process-id", "2"]) == 2
    assert capsys.readouterr().err.strip() == "oir: error: --process-id must be in [0, --num-processes), got 2 of 2"
    assert main(["train", "--out", str(tmp_path / "b"), *base, "--relabel", "llm", "--llm-url", "http://x/v1"]) == 2
    assert "relabels with the narrator only" in capsys.readouterr().err
    # In this process JAX started long ago: it cannot join, and says how to start one that can.
    assert main(["train", "--out", str(tmp_path / "c"), *base]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("oir: error: --num-processes 2: this process did not join the run") and "\n" not in err
