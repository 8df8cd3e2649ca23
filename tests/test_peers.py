"""bench/peers.py's timer: a peer that finishes, then crashes at exit, still counts."""

import subprocess
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


# Dispatches a vmapped computation, reads whether it is done, as Craftax_Baselines' clock does.
DISPATCH = """
import jax, jax.numpy as jnp
body = lambda i, y: jnp.tanh(y @ y) + jax.vmap(jnp.sin)(y)  # a vmap inside a trace stays as it was
f = jax.vmap(jax.jit(lambda x: jax.lax.fori_loop(0, 300, body, x)))
x = jnp.ones((2, 300, 300))
f(x).block_until_ready()
out = f(x)
print("ready", out.is_ready())
"""


def test_the_barrier_makes_a_peers_top_level_call_wait_for_its_computation(tmp_path):
    script = tmp_path / "peer.py"
    script.write_text(DISPATCH)
    out = subprocess.run([sys.executable, str(peers.BARRIER), str(script)], cwd=tmp_path, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert "ready True" in out
