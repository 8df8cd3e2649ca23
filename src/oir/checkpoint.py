"""Checkpoints: crash-safe training state for ``--resume``, and the final policy parameters.

``RUN/checkpoints/<update>/`` (orbax, the last ``--keep-checkpoints``) holds everything a run
needs to go on as if never stopped: the jitted runner (network, optimizer, RNG key, env and task
state, replay), the host state of relabeling (instruction buffer, relabel pool, open segments,
sampling RNG, counters) as one pickled blob, and the metrics offset. Orbax writes each one into a
temporary dir and renames it when complete, so a crash mid-save leaves a ``*.orbax-checkpoint-tmp*``
dir that resume ignores. A committed checkpoint that cannot be read is skipped with a warning in
favour of the one before it.

``RUN/checkpoint/`` holds the final parameters, for ``oir eval`` and ``oir play``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

TMP_MARK = ".orbax-checkpoint-tmp"


def _warn(msg: str) -> None:
    print(f"oir: warning: {msg}", file=sys.stderr)


@dataclass
class Restored:
    update: int  # updates done when it was saved
    runner: Any
    host: bytes  # pickled host state (empty for runs without relabeling)
    meta: dict  # wall_s, env_steps


class Checkpoints:
    """The last ``keep`` resumable checkpoints of a run, saved in the background."""

    def __init__(self, directory: Path, keep: int = 2):
        import orbax.checkpoint as ocp

        self.dir = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.dir, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def save(self, update: int, runner, host: bytes, meta: dict) -> None:
        """Start saving; returns once the state is copied to host memory (the write goes on)."""
        import orbax.checkpoint as ocp

        # Copied to numpy now: the next update donates the runner's device buffers.
        state = {"runner": jax.device_get(runner), "meta": {k: np.asarray(v) for k, v in meta.items()}}
        host_arr = np.frombuffer(host, np.uint8) if host else np.zeros(0, np.uint8)
        self.manager.save(update, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), host=ocp.args.StandardSave({"blob": host_arr})))

    def restore(self, runner_like) -> Restored | None:
        """The newest readable checkpoint (None if there is none); ``runner_like`` gives its structure."""
        import orbax.checkpoint as ocp

        for tmp in sorted(self.dir.glob(f"*{TMP_MARK}*")):
            _warn(f"ignoring half-written checkpoint {tmp} (the process stopped while saving it)")
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                meta_like = {"wall_s": np.zeros((), np.float64), "env_steps": np.zeros((), np.int64)}
                got = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore({"runner": runner_like, "meta": meta_like}),
                    host=ocp.args.StandardRestore()))
            except Exception as e:  # any unreadable file: fall back to the previous checkpoint
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                _warn(f"checkpoint {self.dir / str(step)} is unreadable ({type(e).__name__}: {first[:160]}); "
                      "trying the one before it")
                continue
            meta = {k: v.item() for k, v in got["state"]["meta"].items()}
            return Restored(step, got["state"]["runner"], bytes(np.asarray(got["host"]["blob"])), meta)
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def save_params(path: Path, runner) -> None:
    """The final policy (and optimizer) in ``RUN/checkpoint`` for ``oir eval`` and ``oir play``."""
    import orbax.checkpoint as ocp

    ckpt = ocp.StandardCheckpointer()
    ckpt.save(Path(path).absolute(), {"params": runner.train.params, "opt_state": runner.train.opt_state,
                                      "update": runner.update}, force=True)
    ckpt.wait_until_finished()


def load_params(run_dir: Path):
    """The final parameters of a run; ValueError (one line) when they cannot be read."""
    import orbax.checkpoint as ocp

    path = (Path(run_dir) / "checkpoint").absolute()
    try:
        return ocp.StandardCheckpointer().restore(path)["params"]
    except Exception as e:  # orbax raises many types for a damaged dir
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read the checkpoint in {path}: {msg}") from None
