"""Worlds: the games a policy can be trained in, each one module, behind one interface.

A world module holds everything that is particular to its game, with the same names in every
module:

* the counter vocabulary (``ACHIEVEMENTS``, ``EVENT_NAMES``, ``LEVEL_NAMES``, ``COUNTER_NAMES``,
  ``COUNTER_INDEX``, ``COUNTERS``, ``NUM_EVENTS``, ``NUM_LEVELS``, ``NUM_COUNTERS``,
  ``INVENTORY_ITEMS``, ``VITALS``, ``PLACEABLES``, ``NEAR_BLOCKS``, ``PLACEMENTS``);
* the jitted event extraction, ``step_with_events(env, key, state, action, params)`` and
  ``levels_of(state)``, laid out events first, then levels;
* what the agent sees, read off the symbolic observation: ``NEARBY_NAMES`` and
  ``nearby_from_obs(obs)``;
* the narration words (``WORDS``, :class:`oir.narrate.Words`), which the narrator and the
  narrator relabeler use for that world's events;
* ``make_env()`` (Craftax's env without auto-reset) and ``make_renderer(pixels)``.

:func:`get` returns a :class:`World` by its ``--env`` name. Adding a world is one module and one
line in ``_MODULES``, plus its suite under ``suites/``. The task-spec language is the same in
every world; a spec may only name its world's counters (:func:`oir.tasks.parse_spec`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

_SUITES = Path(__file__).resolve().parents[3] / "suites"
# --env name -> (module, Craftax's name for the game, its standard suite)
_MODULES: dict[str, tuple[str, str, str]] = {
    "classic": ("oir.events", "Craftax-Classic-Symbolic-v1", "standard.jsonl"),
    "full": ("oir.worlds.craftax_full", "Craftax-Symbolic-v1", "full.jsonl"),
}
NAMES: tuple[str, ...] = tuple(_MODULES)
DEFAULT = "classic"


class WorldError(ValueError):
    """An unknown world name (the message lists the known ones)."""


@dataclass(frozen=True, eq=False)
class World:
    """One game: its counters, its event extraction, its observation and its words."""

    name: str  # what --env takes, recorded in a run's config
    env_id: str
    module: ModuleType
    suite: Path  # the world's standard instruction suite

    # The counter vocabulary, read from the module once (the hot paths index these).
    @property
    def achievements(self) -> tuple[str, ...]:
        return self.module.ACHIEVEMENTS

    @property
    def event_names(self) -> tuple[str, ...]:
        return self.module.EVENT_NAMES

    @property
    def level_names(self) -> tuple[str, ...]:
        return self.module.LEVEL_NAMES

    @property
    def counter_names(self) -> tuple[str, ...]:
        return self.module.COUNTER_NAMES

    @property
    def counter_index(self) -> dict[str, int]:
        return self.module.COUNTER_INDEX

    @property
    def counters(self) -> tuple:
        return self.module.COUNTERS

    @property
    def num_events(self) -> int:
        return self.module.NUM_EVENTS

    @property
    def num_levels(self) -> int:
        return self.module.NUM_LEVELS

    @property
    def num_counters(self) -> int:
        return self.module.NUM_COUNTERS

    @property
    def inventory_items(self) -> tuple[str, ...]:
        return self.module.INVENTORY_ITEMS

    @property
    def vitals(self) -> tuple[str, ...]:
        return self.module.VITALS

    @property
    def placements(self) -> tuple[str, ...]:
        return self.module.PLACEMENTS

    @property
    def nearby_names(self) -> tuple[str, ...]:
        return self.module.NEARBY_NAMES

    @property
    def words(self) -> Any:
        return self.module.WORDS

    def step_with_events(self, env, key, state, action, params):
        return self.module.step_with_events(env, key, state, action, params)

    def levels_of(self, state):
        return self.module.levels_of(state)

    def nearby_from_obs(self, obs):
        return self.module.nearby_from_obs(obs)

    def make_env(self) -> Any:
        return self.module.make_env()

    @cached_property
    def num_actions(self) -> int:
        env = self.make_env()
        return int(env.action_space(env.default_params).n)

    def make_renderer(self, pixels: int) -> Callable:
        return self.module.make_renderer(pixels)

    def __repr__(self) -> str:
        return f"World({self.name!r})"

    def __reduce__(self):
        # Pickled by name (a checkpoint, a relabel process): the module itself does not pickle.
        return get, (self.name,)


def get(name: str = DEFAULT) -> World:
    """The world called ``name`` (``--env``); WorldError names the known ones."""
    if name not in _MODULES:
        raise WorldError(f"unknown world {name!r}; choose from {', '.join(NAMES)}")
    return _load(name)


@cache
def _load(name: str) -> World:  # one World per name, however it was asked for
    module, env_id, suite = _MODULES[name]
    return World(name, env_id, importlib.import_module(module), _SUITES / suite)


def of_layout(num_events: int, num_levels: int) -> World:
    """The world whose counter vectors have this layout (host arrays carry no world name).

    The known worlds' layouts differ (checked here), so the shape of a trace names its world.
    """
    for name in NAMES:  # the default first: the others are imported only when needed
        w = get(name)
        if (w.num_events, w.num_levels) == (num_events, num_levels):
            return w
    raise WorldError(f"no world has {num_events} events and {num_levels} levels")


def world_of(x: World | str | None) -> World:
    """A world, from a World, its name, or None (the default)."""
    if isinstance(x, World):
        return x
    return get(x or DEFAULT)
