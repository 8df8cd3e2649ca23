"""Hand-built Craftax states for tests."""

from __future__ import annotations

import jax.numpy as jnp
from craftax.craftax_classic.constants import BlockType

P = (32, 32)  # the player
RIGHT = 2  # craftax direction index: facing (0, +1)
T = (32, 33)  # the faced cell


def scene(world, target=BlockType.GRASS, ground=BlockType.PATH, **inventory):
    """The player at P facing T in a 7x7 patch of ``ground`` with no mobs."""
    m = world.map.at[P[0] - 3 : P[0] + 4, P[1] - 3 : P[1] + 4].set(ground.value)
    m = m.at[T].set(target.value)
    inv = world.inventory.replace(**{k: jnp.asarray(v, jnp.int32) for k, v in inventory.items()})
    no_mobs = lambda mobs: mobs.replace(mask=jnp.zeros_like(mobs.mask))  # noqa: E731
    return world.replace(
        map=m,
        mob_map=jnp.zeros_like(world.mob_map),
        player_position=jnp.array(P, jnp.int32),
        player_direction=jnp.asarray(RIGHT, jnp.int32),
        inventory=inv,
        zombies=no_mobs(world.zombies),
        cows=no_mobs(world.cows),
        skeletons=no_mobs(world.skeletons),
        arrows=no_mobs(world.arrows),
        is_sleeping=jnp.asarray(False),
    )


def with_mob(state, kind: str, health: int = 1):
    mobs = getattr(state, kind)
    mobs = mobs.replace(
        position=mobs.position.at[0].set(jnp.array(T, jnp.int32)),
        health=mobs.health.at[0].set(health),
        mask=mobs.mask.at[0].set(True),
    )
    return state.replace(**{kind: mobs}, mob_map=state.mob_map.at[T].set(True))
