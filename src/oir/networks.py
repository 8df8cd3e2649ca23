"""Instruction-conditioned networks: observation + instruction embedding -> actions.

The instruction enters through FiLM: its embedding scales and shifts the first layer's features
of the observation, so every unit can be gated by what is asked. The networks see the symbolic
observation and the embedding of the instruction *text* only, never the task spec (§9).
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class NetPreset:
    width: int
    depth: int
    layer_norm: bool = True


NETWORKS: dict[str, NetPreset] = {
    "small": NetPreset(width=256, depth=2),  # CPU-sized default
    "purejaxql": NetPreset(width=1024, depth=4),  # purejaxql's PQN Craftax MLP, for like-for-like speed
}


class Trunk(nn.Module):
    width: int
    depth: int
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs: jax.Array, instr: jax.Array) -> jax.Array:
        x = nn.Dense(self.width)(obs)
        gamma, beta = jnp.split(nn.Dense(2 * self.width)(instr), 2, axis=-1)
        x = x * (1.0 + gamma) + beta
        for i in range(self.depth):
            if i > 0:
                x = nn.Dense(self.width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = nn.relu(x)
        return x


class QNetwork(nn.Module):
    """Q(obs, instruction) for every action (PQN)."""

    num_actions: int
    preset: NetPreset

    @nn.compact
    def __call__(self, obs: jax.Array, instr: jax.Array) -> jax.Array:
        p = self.preset
        return nn.Dense(self.num_actions)(Trunk(p.width, p.depth, p.layer_norm)(obs, instr))


class ActorCritic(nn.Module):
    """Policy logits and value from separate trunks (PPO)."""

    num_actions: int
    preset: NetPreset

    @nn.compact
    def __call__(self, obs: jax.Array, instr: jax.Array) -> tuple[jax.Array, jax.Array]:
        p = self.preset
        actor = Trunk(p.width, p.depth, p.layer_norm)(obs, instr)
        logits = nn.Dense(self.num_actions, kernel_init=nn.initializers.orthogonal(0.01))(actor)
        critic = Trunk(p.width, p.depth, p.layer_norm)(obs, instr)
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(critic)
        return logits, value[..., 0]
