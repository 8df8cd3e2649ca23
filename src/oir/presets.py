"""Named training presets (``oir train --preset NAME``): each a documented set of overrides of
:class:`~oir.train.TrainConfig`, with its measured figure and the command that measured it.

The defaults of ``TrainConfig`` *are* the ``oir`` preset: the project's method at the settings
that measured best. Options given beside ``--preset`` override it. Figures are success on the
standard suite's **held-out tasks** (test tasks no run trained on), mean of 2 seeds, final
evaluation of 4 episodes per test line; reports are in ``docs/results/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Preset:
    summary: str  # what it trains, in one line
    overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields; nested: {"ppo": {...}}
    measured: str = ""  # its figure, with the report it comes from
    command: str = ""  # the command that measured it


# The shared settings of the headline (learner, bonus, spans) are the TrainConfig defaults; a
# preset changes only what makes it another method, so every preset but `paper` compares fairly.
PRESETS: dict[str, Preset] = {
    "oir": Preset(
        "OIR (the default): PPO on the narrator's verified relabels added to the suite's train "
        "lines, world spans of 256 steps, count-based achievement bonus, 5M env steps",
        {},
        "56.2% held-out tasks at 5M steps (seeds 0, 1: 57.4, 55.1), 0.95x the labelled baseline; "
        "docs/results/best-5m-oir-s0-report.md and -s1 (an earlier pair of runs: 59.0%, 0.96x, "
        "docs/results/compare-5m-ppo-count-ns-span-s0-report.md and -s1)",
        "oir compare --methods narrator+suite --seeds 0,1",
    ),
    "labelled": Preset(
        "the no-relabel baseline: PPO on the suite's human-labelled train lines only, same settings",
        {"relabel": "none"},
        "59.4% held-out tasks at 5M steps (seeds 0, 1: 58.6, 60.1), the strongest baseline; "
        "docs/results/best-5m-base-s0-report.md and -s1 (an earlier pair of runs: 61.2%, "
        "docs/results/compare-5m-ppo-count-base-s0-report.md and -s1)",
        "oir compare --methods no-relabel --seeds 0,1",
    ),
    "zero-label": Preset(
        "OIR with no human label: the narrator's relabels only, no suite line in training",
        {"labels": 0.0},
        "58.0% held-out tasks at 5M steps (seeds 0, 1: 59.8, 56.2), 0.98x the labelled baseline's "
        "59.4%; docs/results/kept/zero-label-5m/report.md (an earlier pair of runs: 53.3%, 0.87x, "
        "docs/results/compare-5m-ppo-count-narr-span-s0-report.md and -s1)",
        "oir compare --methods narrator --seeds 0,1",
    ),
    "ellm": Preset(
        "the ELLM baseline (Du et al. 2023): goals suggested from the agent's state by the "
        "rule-based suggester (not a language model), paid the caption's cosine at delta 0.76",
        {"relabel": "none", "suggest": "rules", "reward": "similarity", "delta": 0.76},
        "26.6% held-out tasks with PQN at 2M steps (2 seeds, no bonus; labelled PQN 29.6%); "
        "not measured with PPO and the bonus; docs/results/compare-2m-delta-report.md",
        "oir compare --methods ellm --algo pqn --steps 2000000 --seeds 0,1 "
        "--train.achievement-bonus 0 --train.relabeling.world-span 0",
    ),
    "paper": Preset(
        "the paper's recipe as close as this project has it: PQN, LLM relabels (needs --llm-url), "
        "similarity reward at delta 0.7, the prioritized instruction buffer, no achievement bonus, "
        "no suite line, one instruction per segment",
        {"algo": "pqn", "relabel": "llm", "reward": "similarity", "delta": 0.7, "labels": 0.0,
         "achievement_bonus": 0.0, "relabeling": {"world_span": 0}},
        "not measured with an LLM at these settings; with the narrator in the LLM's place, PQN at "
        "2M steps: 32.6% held-out tasks (2 seeds), 1.10x labelled PQN; "
        "docs/results/compare-2m-delta-report.md",
        "oir compare --methods narrator-similarity@0.7 --algo pqn --steps 2000000 --seeds 0,1 "
        "--train.achievement-bonus 0 --train.relabeling.world-span 0",
    ),
}


def apply(cfg: Any, name: str) -> Any:
    """``cfg`` (a TrainConfig) with preset ``name``'s overrides; ValueError names the choices."""
    if name not in PRESETS:
        raise ValueError(f"unknown --preset {name!r} (choose from {', '.join(PRESETS)})")
    return replace(_overridden(cfg, PRESETS[name].overrides), preset=name)


def _overridden(obj: Any, overrides: dict[str, Any]) -> Any:
    names = {f.name for f in fields(obj)}
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"preset override {key!r} is not an option")
        current = getattr(obj, key)
        changes[key] = _overridden(current, value) if is_dataclass(current) and isinstance(value, dict) else value
    return replace(obj, **changes)
