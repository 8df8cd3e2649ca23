"""bench/peers.py's timer: a peer that finishes, then crashes at exit, still counts."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

import peers

# Prints what Craftax_Baselines' ppo.py prints when done, then dies as it does on full Craftax.
CRASH_AFTER = "import os, signal; print('SPS:  9.3', flush=True); os.kill(os.getpid(), signal.SIGSEGV)"
CRASH_BEFORE = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"


def test_a_peer_killed_at_exit_after_its_result_counts_and_one_killed_before_does_not(tmp_path):
    env = peers._child_env()
    done = peers._run("p", [sys.executable, "-c", CRASH_AFTER], tmp_path, env, 100, 60, finished="SPS: ")
    assert done["ok"] and done["sps"] > 0 and "signal 11" in done["note"]
    cut = peers._run("p", [sys.executable, "-c", CRASH_BEFORE], tmp_path, env, 100, 60, finished="SPS: ")
    assert not cut["ok"] and cut["error"].startswith("exit code -11")
    plain = peers._run("p", [sys.executable, "-c", CRASH_AFTER], tmp_path, env, 100, 60)
    assert not plain["ok"]  # without the marker a crash is a failure
