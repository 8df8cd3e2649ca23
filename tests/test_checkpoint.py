"""Crash-safe checkpoints: kill -9 a real training process, resume it, and get the same run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oir.checkpoint import TMP_MARK, committed_steps
from oir.cli import main

PER_UPDATE = 8 * 16
# OIR (PQN) with the narrator, relabeling synchronous so the same seed gives the same run; zero-label,
# no bonus, no world spans: the shapes of tests/test_oir.py.
TINY = ["--encoder", "hash", "--num-envs", "8", "--max-task-steps", "32", "--relabeling.history", "64",
        "--relabeling.batch", "8", "--relabeling.window", "8", "--pqn.num-minibatches", "2",
        "--eval-episodes", "0", "--relabel", "narrator", "--relabeling.synchronous", "--keep-checkpoints", "3",
        "--algo", "pqn", "--labels", "0", "--achievement-bonus", "0", "--relabeling.world-span", "0"]
# Wall-clock and process-local counters; everything else in a row comes from the jitted update or
# from deterministic host work.
TIMING = {"sps", "wall_s", "relabel_wall_frac", "relabel_worker_frac", "texts_embedded"}


def rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def same_run(a: Path, b: Path) -> None:
    ra, rb = rows(a), rows(b)
    assert [r["env_steps"] for r in rb] == [PER_UPDATE * (i + 1) for i in range(len(ra))]  # none lost or doubled
    for x, y in zip(ra, rb, strict=True):
        assert {k: v for k, v in x.items() if k not in TIMING} == {k: v for k, v in y.items() if k not in TIMING}
    assert (a / "instructions.jsonl").read_text() == (b / "instructions.jsonl").read_text()


committed = committed_steps  # the updates of the complete checkpoints in a dir

def test_kill_9_after_the_second_checkpoint_then_resume_matches_an_uninterrupted_run(tmp_path, capsys):
    steps = ["--steps", str(PER_UPDATE * 120), "--checkpoint-every", str(PER_UPDATE * 20)]
    ref = tmp_path / "ref"
    assert main(["train", *TINY, *steps, "--out", str(ref)]) == 0

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "oir.cli", "train", *TINY, *steps, "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while len(committed(run / "checkpoints")) < 2:
        assert proc.poll() is None, f"training ended before its second checkpoint: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    kept = committed(run / "checkpoints")
    assert len(rows(run)) >= kept[-1]  # rows up to (and maybe past) the newest checkpoint

    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert f"resuming {run} after update {kept[-1]}" in capsys.readouterr().err
    same_run(ref, run)
    assert json.loads((run / "summary.json").read_text())["resumed_after_update"] == kept[-1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run with checkpoints after updates 8 and 16 (of 24)."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    assert main(["train", *TINY, "--steps", str(PER_UPDATE * 24), "--checkpoint-every", str(PER_UPDATE * 8),
                 "--out", str(out)]) == 0
    assert committed(out / "checkpoints") == [8, 16]
    return out


def test_half_written_and_unreadable_checkpoints_are_skipped_for_the_previous_one(finished, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    ref_rows = rows(run)
    # A crash during a save leaves orbax's temporary dir; a damaged disk, a committed unreadable one.
    (run / "checkpoints" / "24.orbax-checkpoint-tmp-1700000000").mkdir()
    (run / "checkpoints" / "24.orbax-checkpoint-tmp-1700000000" / "partial").write_bytes(b"\0" * 10)
    for f in (run / "checkpoints" / "16" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "ignoring half-written checkpoint" in err and "24.orbax-checkpoint-tmp" in err
    assert f"checkpoint {(run / 'checkpoints' / '16').absolute()} is unreadable" in err
    assert f"resuming {run} after update 8" in err
    assert [r["env_steps"] for r in rows(run)] == [r["env_steps"] for r in ref_rows]
    assert [r["td_loss"] for r in rows(run)] == [r["td_loss"] for r in ref_rows]


def test_checkpoints_none_of_which_this_build_reads_are_one_error_line(finished, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for f in (run / "checkpoints").rglob("state/*"):  # as from a build whose runner had other fields
        if f.is_file():
            f.write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"oir: error: none of the 2 checkpoints in {run / 'checkpoints'} can be read by this build "
                       "of oir (written by another version, or damaged); start the run again")
    assert sum("is unreadable" in line for line in err) == 2 and len(err) == 3


def test_config_json_reproduces_a_run(finished, tmp_path):
    again = tmp_path / "again"
    assert main(["train", "--config", str(finished / "config.json"), "--out", str(again)]) == 0
    same_run(finished, again)


@pytest.mark.parametrize("args,message", [
    (["train", "--resume", "/nonexistent/run"], "/nonexistent/run is not a training run (no config.json)"),
    (["train", "--config", "/nonexistent/config.json"], "cannot read /nonexistent/config.json: No such file or directory"),
    (["eval", "--run", "/nonexistent/run"], "run dir not found: /nonexistent/run"),
    (["train", "--steps", "64", "--out", "/proc/oir-run"], "cannot write to --out /proc/oir-run: No such file or directory"),
    (["eval", "--run", "/nonexistent/run", "--out", "/proc/x/r.json"], "cannot write --out /proc/x/r.json: No such file or directory"),
    (["relabel", "--segments", "/nonexistent.npz", "--out", "/proc/r.jsonl"], "cannot write --out /proc/r.jsonl: No such file or directory"),
    (["compare", "--steps", "64", "--out", "/proc/cmp"], "cannot write to --out /proc/cmp: No such file or directory"),
])
def test_bad_run_input_is_one_line(args, message, capsys):
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"oir: error: {message}"


def test_resume_refuses_other_flags_and_corrupt_runs(finished, tmp_path, capsys):
    import shutil

    assert main(["train", "--resume", str(finished), "--steps", "10"]) == 2
    assert capsys.readouterr().err.strip() == (
        "oir: error: --resume goes on with the run's own config.json: give no other flags but --devices")
    assert main(["train", "--config", str(finished / "config.json")]) == 2  # would overwrite it
    assert "give --out for the new run" in capsys.readouterr().err

    broken = tmp_path / "broken"
    shutil.copytree(finished, broken)
    for f in (broken / "checkpoint").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    assert main(["eval", "--run", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"oir: error: cannot read the checkpoint in {(broken / 'checkpoint').absolute()}")
    assert "\n" not in err
    (broken / "config.json").write_text("{not json")
    assert main(["train", "--resume", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"oir: error: {broken / 'config.json'} is not an oir config.json") and "\n" not in err


# ---------------------------------------------------------------------------------------------
# Every learner and relabeler crosses checkpoints, is killed, and goes on. The shapes are the
# ones above (and in tests/test_oir.py), so the compiled updates come from JAX's persistent cache.

BASE = ["--encoder", "hash", "--num-envs", "8", "--max-task-steps", "32", "--relabeling.history", "64",
        "--relabeling.batch", "8", "--relabeling.window", "8", "--pqn.num-minibatches", "2",
        "--ppo.num-steps", "16", "--ppo.num-minibatches", "2", "--eval-episodes", "0", "--keep-checkpoints", "2",
        "--achievement-bonus", "0", "--relabeling.world-span", "0"]
MATRIX = {
    "pqn-none": ["--algo", "pqn", "--relabel", "none"],
    "pqn-narrator": ["--algo", "pqn", "--relabel", "narrator", "--labels", "0"],
    "ppo-none": ["--algo", "ppo", "--relabel", "none"],
    "ppo-narrator": ["--algo", "ppo", "--relabel", "narrator", "--labels", "0"],
    "pqn-llm": ["--algo", "pqn", "--relabel", "llm", "--labels", "0", "--llm-model", "test-model", "--llm-timeout", "2",
                "--llm-batch", "2", "--llm-cache", "off"],
}
UPDATES, EVERY = 48, 8


def wood_for_each(request):
    """A true relabel for every segment that collected wood, none for the others."""
    from llm_server import Reply

    segments = [{"id": i, "proposals": [{"text": "Collect wood.", "task": {"all": [{"counter": "collect_wood", "at_least": 1}]}}]
                 if "collected wood" in n else []} for i, n in enumerate(request.narrations, 1)]
    return Reply(json.dumps({"segments": [s for s in segments if s]}))


def start_train(args: list[str], drop_root: bool = False) -> subprocess.Popen:
    """``oir train`` as its own process; ``drop_root`` takes away root's power to write anywhere,
    so that file modes bind (CI may run as root)."""
    cmd = [sys.executable, "-m", "oir.cli", "train", *args]
    if drop_root and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoints(proc: subprocess.Popen, ckpts: Path, n: int) -> list[int]:
    deadline = time.monotonic() + 600
    while len(committed(ckpts)) < n:
        assert proc.poll() is None, f"training ended before checkpoint {n}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return committed(ckpts)


@pytest.fixture(scope="module")
def llm_server():
    from llm_server import LLMServer

    srv = LLMServer()
    srv.respond = wood_for_each
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("combo", list(MATRIX))
def test_every_learner_and_relabeler_crosses_checkpoints_is_killed_and_resumes(combo, tmp_path, capsys, request):
    args = [*BASE, *MATRIX[combo], "--steps", str(PER_UPDATE * UPDATES), "--checkpoint-every", str(PER_UPDATE * EVERY)]
    if combo.endswith("llm"):
        args += ["--llm-url", request.getfixturevalue("llm_server").url]
    run = tmp_path / combo
    proc = start_train([*args, "--out", str(run)])
    kept = wait_for_checkpoints(proc, run / "checkpoints", 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists()
    kept = committed(run / "checkpoints")
    assert len(kept) == 2 and kept[-1] % EVERY == 0  # the interval was crossed at least twice

    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"resuming {run} after update {kept[-1]}" in err and "Traceback" not in err
    assert [r["env_steps"] for r in rows(run)] == [PER_UPDATE * (i + 1) for i in range(UPDATES)]  # no gap, no duplicate
    assert [r["update"] for r in rows(run)] == list(range(1, UPDATES + 1))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_after_update"] == kept[-1] and summary["checkpoints_failed"] == 0
    assert summary["env_steps"] == PER_UPDATE * UPDATES
    assert committed(run / "checkpoints")[-1] > kept[-1]  # the resumed run saved again
    if combo.endswith("narrator") or combo.endswith("llm"):
        assert summary["relabeling"]["relabel_verified"] > 0


def needs_file_modes() -> None:
    import shutil

    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to bind")


def test_checkpoints_made_read_only_mid_run_warn_and_training_goes_on(tmp_path, capsys):
    needs_file_modes()
    run = tmp_path / "ro"
    proc = start_train([*BASE, *MATRIX["pqn-none"], "--steps", str(PER_UPDATE * UPDATES),
                        "--checkpoint-every", str(PER_UPDATE * EVERY), "--out", str(run)], drop_root=True)
    first = wait_for_checkpoints(proc, run / "checkpoints", 1)
    (run / "checkpoints").chmod(0o555)
    _, err = proc.communicate(timeout=600)
    (run / "checkpoints").chmod(0o755)
    assert proc.returncode == 0, err[-2000:]
    warnings = [x for x in err.splitlines() if x.startswith("oir: warning: checkpoint after update")]
    assert warnings and "Traceback" not in err
    assert all("could not be written" in x and "the previous checkpoint is kept" in x for x in warnings)
    assert all(x.startswith("oir: ") or not x.strip() or "━" in x for x in err.splitlines())  # nothing else
    summary = json.loads((run / "summary.json").read_text())
    assert summary["checkpoints_failed"] == len(warnings) >= 1
    assert first[0] in committed(run / "checkpoints")  # the one written before is still there
    assert [r["env_steps"] for r in rows(run)] == [PER_UPDATE * (i + 1) for i in range(UPDATES)]
    assert not list((run / "checkpoints").glob(f"*{TMP_MARK}*"))  # no half-written leftovers


def test_a_final_save_that_fails_is_one_error_line_and_a_nonzero_exit(tmp_path):
    needs_file_modes()
    run = tmp_path / "final"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "keep").write_text("x")
    (run / "checkpoint").chmod(0o555)  # the final parameters cannot replace it
    proc = start_train([*BASE, *MATRIX["pqn-none"], "--steps", str(PER_UPDATE * 16),
                        "--checkpoint-every", str(PER_UPDATE * EVERY), "--out", str(run)], drop_root=True)
    _, err = proc.communicate(timeout=600)
    (run / "checkpoint").chmod(0o755)
    assert proc.returncode == 1
    lines = [x for x in err.splitlines() if x.startswith("oir: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"oir: error: the final parameters could not be written to {(run / 'checkpoint').absolute()}")
    assert lines[0].endswith(f"`oir train --resume {run}` goes on from its last checkpoint")
    assert committed(run / "checkpoints") == [8]
