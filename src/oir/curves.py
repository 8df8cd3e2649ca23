"""Learning curves over seeds: the band, the area under it and the steps to a threshold.

NumPy only, so that ``bench/headline.py`` reads finished runs without JAX. A curve is a list of
``(env steps, value)`` pairs, one per training-time evaluation of one seed.
"""

from __future__ import annotations

import numpy as np

Curve = list[tuple[int, float]]


def training_eval_episodes(config: dict) -> int:
    """Episodes per suite line behind each point of a run's curve, from its config (as a dict:
    a config.json's, or ``asdict`` of a TrainConfig); 0 in ``eval_every_episodes`` means
    ``eval_episodes``, at least 1, as before the option existed."""
    return int(config.get("eval_every_episodes", 0) or max(int(config.get("eval_episodes", 1) or 0), 1))


def band(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Env steps every seed evaluated at, and the mean, min and max over seeds there."""
    curves = [c for c in curves if c]
    if not curves:
        return (np.zeros(0),) * 4
    common = sorted(set.intersection(*({x for x, _ in c} for c in curves)))
    ys = np.array([[dict(c)[x] for x in common] for c in curves], float).reshape(len(curves), len(common))
    return np.asarray(common, float), ys.mean(0), ys.min(0), ys.max(0)


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area under y over x (from the first point to the last)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)) if len(x) > 1 else 0.0


def steps_to(x: np.ndarray, y: np.ndarray, threshold: float) -> float | None:
    """The first x at which y reaches ``threshold``; None if it never does."""
    hit = np.nonzero(np.asarray(y) >= threshold)[0]
    return float(np.asarray(x)[hit[0]]) if len(hit) else None
