"""ELLM-style goals (Du et al. 2023, "Guiding Pretraining in RL with Large Language Models").

The paper's other baseline. Instead of relabeling what the agent did, a *suggester* reads the
agent's current state and proposes goals that could be done next; the agent is conditioned on
one of them and rewarded when the caption of a step is similar enough to the goal text:

* **Goals**: one short imperative per Craftax achievement, in Crafter's own achievement words
  (``collect wood``, ``place table``, ``make wood pickaxe``...): ELLM's Crafter goal space.
  None is a text of the human suite (design doc §9; ``tests/test_ellm.py`` checks). Each goal
  also carries the achievement's spec, never shown to the agent and never used for its reward:
  only so that every similarity reward can be checked (``reward_false_rate``).
* **Suggester**: :func:`rule_suggestions`, offline and rule-based (the default; it is not a
  language model), reads inventory and what is in view, the state ELLM's LLM is prompted with,
  and suggests the goals whose Craftax-Classic requirements hold there. Suggestions run in the
  jitted env at every instruction draw, so ELLM costs no host work.
* **Novelty**: a goal whose achievement the agent already unlocked in this episode is not
  suggested again (ELLM's ``novelty_bonus``): Craftax's own per-episode achievement bits.
* **Reward**: the cosine between the step's caption (the narrator's phrase of each event of the
  step, :data:`oir.narrate.EVENT_TEXTS`; the best one when several happen) and the goal, when it
  is at least the threshold (``--delta``); else 0. ``--ellm-reward binary`` gives 1 instead.

Where this differs from ELLM's code (``yuqingd/ellm``, ``config.yaml``): its encoder was SBERT
paraphrase-MiniLM-L3-v2 and its threshold 0.99 against captions written in the goals' own words;
here the encoder is the project's all-MiniLM-L6-v2 (offline) and the captions are the narrator's
past-tense phrases, so the default threshold is 0.76: every goal's own events reach it (the
lowest, "place table" against "placed a crafting table", 0.766) and no other achievement's event
does (the highest, "collect sapling" against "planted a sapling", 0.759; ``tests/test_ellm.py``).
A window of 0.007 in cosine: similarity rewards are that fragile. ELLM queried a
(cached) LLM per step; the rule suggester answers in the jitted env instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from oir.events import ACHIEVEMENTS, LEVEL_NAMES
from oir.narrate import NEARBY_NAMES, nearby_from_obs
from oir.tasks import Clause, TaskSpec

GOALS: dict[str, str] = {a: a.replace("_", " ") for a in ACHIEVEMENTS} | {
    "collect_drink": "drink water",
    "place_plant": "plant sapling",
}
GOAL_TEXTS: tuple[str, ...] = tuple(GOALS[a] for a in ACHIEVEMENTS)
GOAL_SPECS: tuple[TaskSpec, ...] = tuple(TaskSpec(all=(Clause(a, at_least=1),)) for a in ACHIEVEMENTS)
DEFAULT_THRESHOLD = 0.76
REWARDS = ("cosine", "binary")


def goal_rewards(goal_emb: np.ndarray, event_emb: np.ndarray, threshold: float, reward: str = "cosine") -> np.ndarray:
    """float32[G, E]: what a step with event e pays for goal g (cosine or 1 at or above threshold, else 0)."""
    cos = np.asarray(goal_emb, np.float32) @ np.asarray(event_emb, np.float32).T
    paid = cos if reward == "cosine" else np.ones_like(cos)
    # A threshold at or below 0 would pay negative cosines: a step never costs the agent here.
    return np.where((cos >= threshold) & (paid > 0), paid, 0.0).astype(np.float32)


def _level(levels: jax.Array, name: str) -> jax.Array:
    return levels[..., LEVEL_NAMES.index(name)]


def _sees(nearby: jax.Array, *names: str) -> jax.Array:
    return jnp.stack([nearby[..., NEARBY_NAMES.index(n)] for n in names], -1).any(-1)


def rule_suggestions(levels: jax.Array, nearby: jax.Array) -> jax.Array:
    """bool[..., len(ACHIEVEMENTS)]: the goals whose Craftax-Classic requirements hold in this
    state (``levels`` int[..., NUM_LEVELS], ``nearby`` bool[..., NUM_NEARBY], what is in view)."""
    has = lambda item, n=1: _level(levels, f"inventory_{item}") >= n  # noqa: E731
    table, furnace = _sees(nearby, "crafting_table"), _sees(nearby, "furnace")
    rules = {
        "collect_wood": _sees(nearby, "tree"),
        "place_table": has("wood", 2),
        "eat_cow": _sees(nearby, "cow"),
        "collect_sapling": _sees(nearby, "grass"),
        "collect_drink": _sees(nearby, "water") & (_level(levels, "drink") < 9),
        "make_wood_pickaxe": table & has("wood"),
        "make_wood_sword": table & has("wood"),
        "place_plant": has("sapling") & _sees(nearby, "grass"),
        "defeat_zombie": _sees(nearby, "zombie"),
        "collect_stone": _sees(nearby, "stone") & has("wood_pickaxe"),
        "place_stone": has("stone"),
        "eat_plant": _sees(nearby, "ripe_plant"),
        "defeat_skeleton": _sees(nearby, "skeleton"),
        "make_stone_pickaxe": table & has("wood") & has("stone"),
        "make_stone_sword": table & has("wood") & has("stone"),
        "wake_up": _level(levels, "energy") < 3,
        "place_furnace": table & has("stone"),
        "collect_coal": _sees(nearby, "coal") & has("wood_pickaxe"),
        "collect_iron": _sees(nearby, "iron") & has("stone_pickaxe"),
        "collect_diamond": _sees(nearby, "diamond") & has("iron_pickaxe"),
        "make_iron_pickaxe": table & furnace & has("wood") & has("coal") & has("iron"),
        "make_iron_sword": table & furnace & has("wood") & has("coal") & has("iron"),
    }
    return jnp.stack([rules[a] for a in ACHIEVEMENTS], -1)


def suggest(key: jax.Array, obs: jax.Array, world, levels: jax.Array) -> jax.Array:
    """int32[N]: one suggested goal per env from its observation and Craftax state (the
    ``TaskEnv(suggest=...)`` hook); see :func:`suggest_goals`."""
    return suggest_goals(key, nearby_from_obs(obs), world.achievements.astype(bool), levels)


def suggest_goals(key: jax.Array, nearby: jax.Array, achieved: jax.Array, levels: jax.Array) -> jax.Array:
    """int32[N]: one goal per env (rows of the goal bank, in ACHIEVEMENTS order), uniformly among
    those :func:`rule_suggestions` allows that the episode has not ``achieved`` (bool[N, 22]) yet:
    ELLM's novelty filter. An env with none draws from its goals not achieved yet, and from all
    goals once it has achieved every one.
    """
    novel = ~achieved
    ok = rule_suggestions(levels, nearby) & novel
    ok = jnp.where(ok.any(-1, keepdims=True), ok, novel)
    ok = jnp.where(ok.any(-1, keepdims=True), ok, True)
    return jax.random.categorical(key, jnp.where(ok, 0.0, -jnp.inf)).astype(jnp.int32)
