"""Loading a trained policy from an ``oir train`` run dir or a shipped agent dir: one place that
``oir eval``, ``oir play``, ``oir demo`` and ``oir compare`` all use.

A run dir holds ``config.json`` (the :class:`~oir.train.TrainConfig`) and ``checkpoint/`` (the
final parameters); a shipped agent (:mod:`oir.shipped`) holds ``params.npz`` instead. The network
is rebuilt from the config, the parameters restored, and any instruction text embedded with the
run's encoder: texts seen in training or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from oir import worlds
from oir.checkpoint import load_params
from oir.encode import make_encoder
from oir.evaluate import TextPolicy, text_policy
from oir.networks import NETWORKS
from oir.shipped import is_agent, load_agent_params
from oir.train import ALGOS, TrainConfig, load_config


def check_run_dir(run_dir: Path) -> None:
    """FileNotFoundError (one line) unless ``run_dir`` holds a finished run or a shipped agent."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run dir not found: {run_dir}")
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run (no config.json)")
    if not (run_dir / "checkpoint").is_dir() and not is_agent(run_dir):
        raise FileNotFoundError(f"{run_dir} has no checkpoint (was training interrupted?)")


def policy_from_run(run_dir: str | Path, texts: Sequence[str]) -> TextPolicy:
    """The trained policy of a run dir, acting on suite lines with these texts."""
    return load_run(run_dir)[1](texts)


def load_run(run_dir: str | Path) -> tuple[TrainConfig, Callable[[Sequence[str]], TextPolicy]]:
    """The run's config and a function ``texts -> TextPolicy`` over its restored parameters."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    cfg = load_config(run_dir / "config.json", strict=False)  # a run of a retired option still acts
    act = ALGOS[cfg.algo].make_act(getattr(cfg, cfg.algo), NETWORKS[cfg.network], worlds.get(cfg.env).num_actions)
    params = load_agent_params(run_dir) if is_agent(run_dir) else load_params(run_dir)
    encoder = make_encoder(cfg.encoder)

    def policy(texts: Sequence[str]) -> TextPolicy:
        return text_policy(act, params, encoder.encode(list(texts)))

    return cfg, policy
