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

import contextlib
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from oir.devices import to_host
from oir.errors import first_line

TMP_MARK = ".orbax-checkpoint-tmp"


class _NoOrbaxErrors(logging.Filter):
    """Orbax logs a failed background save with tracebacks; oir reports it as one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "orbax" not in record.pathname


logging.getLogger("absl").addFilter(_NoOrbaxErrors())


def _warn(msg: str) -> None:
    print(f"oir: warning: {msg}", file=sys.stderr)


@dataclass
class Restored:
    update: int  # updates done when it was saved
    runner: Any
    host: bytes  # pickled host state (empty for runs without relabeling)
    meta: dict  # wall_s, env_steps


def committed_steps(directory: Path) -> list[int]:
    """The updates of the complete checkpoints in ``directory`` (orbax marks each when committed)."""
    d = Path(directory)
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and (p / "commit_success.txt").exists()) \
        if d.is_dir() else []


class CheckpointError(RuntimeError):
    """The final parameters could not be written: printed as one ``oir: error:`` line."""


class Checkpoints:
    """The last ``keep`` resumable checkpoints of a run, saved in the background.

    A save that cannot be written (disk full, permission lost, anything orbax raises) costs one
    ``oir: warning:`` line and nothing else: training goes on and the previous checkpoint stays.
    """

    def __init__(self, directory: Path, keep: int = 2):
        self.dir = Path(directory).absolute()
        self.keep = keep
        self.failed = 0  # saves that could not be written
        self._pending: int | None = None  # the update whose write may still be going on
        self.manager = self._open()

    def _open(self):
        import orbax.checkpoint as ocp

        return ocp.CheckpointManager(self.dir, options=ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True))

    def _failed_save(self, update: int, e: BaseException, manager_ok: bool = False) -> None:
        self.failed += 1
        _warn(f"checkpoint after update {update} could not be written to {self.dir} ({first_line(e)}); "
              "training goes on, the previous checkpoint is kept")
        for tmp in self.dir.glob(f"{update}{TMP_MARK}*"):  # ours, not a crash's: no warning on resume
            shutil.rmtree(tmp, ignore_errors=True)
        if manager_ok:
            return
        # After a failure orbax's manager may have shut its executor down: start a new one.
        with contextlib.suppress(Exception):  # it is being replaced either way
            self.manager.close()
        try:
            self.manager = self._open()
        except Exception:  # the next save tries again
            self.manager = None

    def _settle(self) -> None:
        """Wait for the write in flight; a failure of it is a warning, like a failed save."""
        if self._pending is None:
            return
        update, self._pending = self._pending, None
        try:
            if self.manager is not None:
                self.manager.wait_until_finished()
                self.manager.check_for_errors()
        except Exception as e:  # any write failure is reported the same way
            self._failed_save(update, e)

    def save(self, update: int, runner, host: bytes, meta: dict) -> None:
        """Start saving; returns once the state is copied to host memory (the write goes on).

        ``host`` may be empty (a run without relabeling has no host state): it is then not stored,
        since orbax refuses zero-size arrays.
        """
        import orbax.checkpoint as ocp

        self._settle()
        try:
            # Orbax creates the step dir in a background thread that others wait on for minutes if
            # it fails: a dir that cannot be written to is found here, before orbax starts.
            probe = self.dir / f".write-probe-{os.getpid()}"
            self.dir.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            self._failed_save(update, e, manager_ok=True)
            return
        # Copied to numpy now: the next update donates the runner's device buffers.
        state = {"runner": jax.device_get(runner), "meta": {k: np.asarray(v) for k, v in meta.items()}}
        items = {"state": ocp.args.StandardSave(state)}
        if host:
            items["host"] = ocp.args.StandardSave({"blob": np.frombuffer(host, np.uint8)})
        try:
            if self.manager is None:
                self.manager = self._open()
            self.manager.save(update, args=ocp.args.Composite(**items))
            self._pending = update
        except Exception as e:  # a checkpoint must never stop training
            self._failed_save(update, e)

    def restore(self, runner_like) -> Restored | None:
        """The newest readable checkpoint (None if there is none); ``runner_like`` gives its structure."""
        import orbax.checkpoint as ocp

        for tmp in sorted(self.dir.glob(f"*{TMP_MARK}*")):
            _warn(f"ignoring half-written checkpoint {tmp} (the process stopped while saving it)")
        for step in sorted(self.manager.all_steps(), reverse=True):
            meta_like = {"wall_s": np.zeros((), np.float64), "env_steps": np.zeros((), np.int64)}
            items = {"state": ocp.args.StandardRestore({"runner": runner_like, "meta": meta_like})}
            has_host = (self.dir / str(step) / "host").is_dir()
            if has_host:
                items["host"] = ocp.args.StandardRestore()
            try:
                got = self.manager.restore(step, args=ocp.args.Composite(**items))
            except Exception as e:  # any unreadable file: fall back to the previous checkpoint
                _warn(f"checkpoint {self.dir / str(step)} is unreadable ({first_line(e)}); "
                      "trying the one before it")
                continue
            meta = {k: v.item() for k, v in got["state"]["meta"].items()}
            host = bytes(np.asarray(got["host"]["blob"])) if has_host else b""
            return Restored(step, got["state"]["runner"], host, meta)
        return None

    def close(self) -> None:
        """Finish the write in flight (a failure is a warning) and let the manager go."""
        self._settle()
        try:
            if self.manager is not None:
                self.manager.close()
        except Exception as e:  # closing must not hide the run's own outcome
            _warn(f"closing the checkpoints in {self.dir}: {first_line(e)}")


def save_params(path: Path, runner) -> None:
    """The final policy (and optimizer) in ``RUN/checkpoint`` for ``oir eval`` and ``oir play``."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    try:
        ckpt = ocp.StandardCheckpointer()
        # Host copies: the file then restores on any device count, not only the one it ran on.
        ckpt.save(path, to_host({"params": runner.train.params, "opt_state": runner.train.opt_state,
                                 "update": runner.update}), force=True)
        ckpt.wait_until_finished()
    except Exception as e:  # orbax raises many types for a failed write
        raise CheckpointError(f"the final parameters could not be written to {path} ({first_line(e)})") from None


def load_params(run_dir: Path):
    """The final parameters of a run; ValueError (one line) when they cannot be read."""
    import orbax.checkpoint as ocp

    path = (Path(run_dir) / "checkpoint").absolute()
    try:
        return ocp.StandardCheckpointer().restore(path)["params"]
    except Exception as e:  # orbax raises many types for a damaged dir
        raise ValueError(f"cannot read the checkpoint in {path}: {first_line(e, typed=False)}") from None
