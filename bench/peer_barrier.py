"""Run a peer's training script unchanged, except that its timer sees its whole computation.

    python bench/peer_barrier.py SCRIPT [ARGS...]   # from the peer's checkout, with its interpreter

Craftax_Baselines' ``ppo.py`` reads its clock right after *dispatching* its jitted training
(JAX runs it asynchronously) and then exits without waiting for the result. Its printed time is
the compile; on full Craftax the process then dies with SIGSEGV a few seconds into training,
so a wall clock around it timed the compile and almost none of the training. purejaxql's script
waits itself (``jax.block_until_ready``). Here a vmapped function called outside any trace waits
for its outputs before returning, so the peer's own clock, and ours around the process, cover the
training it was asked to run. Nothing of the peer is copied or edited.
"""

from __future__ import annotations

import functools
import runpy
import sys

import jax


def _waiting(vmap):
    @functools.wraps(vmap)
    def patched(fun, *args, **kwargs):
        batched = vmap(fun, *args, **kwargs)

        @functools.wraps(batched)
        def call(*a, **k):
            out = batched(*a, **k)
            if not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(out)):
                jax.block_until_ready(out)  # a top-level call: its computation has to finish
            return out

        return call

    return patched


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: peer_barrier.py SCRIPT [ARGS...]")
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, ".")  # the peer's checkout, as when its script runs directly
    jax.vmap = _waiting(jax.vmap)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
