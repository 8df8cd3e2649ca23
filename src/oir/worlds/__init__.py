"""Worlds: one module per game, each holding its counter vocabulary and its jitted event extraction.

A world module names its counters (``COUNTER_NAMES``, ``COUNTERS``, ``NUM_EVENTS``,
``NUM_LEVELS``...) and provides ``levels_of(state)`` and ``step_with_events(env, key, state,
action, params)`` with one shared layout: events first, then levels. Craftax-Classic's world is
still :mod:`oir.events`; this package is where full Craftax (:mod:`oir.worlds.craftax_full`)
starts, so that a later refactor can make both worlds one interface.
"""
