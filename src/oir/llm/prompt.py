"""The LLM relabeler's prompt: versioned templates filled with the vocabulary and narrations.

:func:`load_prompt` reads ``oir/prompts/<version>.txt`` (a ``=== system ===`` section and a
``=== user ===`` section); :func:`render_prompt` fills it with the counter vocabulary and a batch
of numbered narrations, giving the chat messages of one request.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Sequence
from importlib import resources

from oir import worlds
from oir.worlds import World

DEFAULT_PROMPT = "relabel_v1"
# A world's own prompt, where its game needs other words and another example than Classic's.
WORLD_PROMPTS = {"full": "relabel_full_v1"}

# What each kind of counter is, in the order the prompt lists them (a world lists the kinds it has).
_KINDS = {
    "achievement": "events, counted each time they happen",
    "floor_change": "events: going down or up one floor",
    "kill": "events: creatures killed, by kind",
    "spell": "events: spells learnt",
    "potion": "events: potions drunk, by colour",
    "placement": "events: the first block put down with the second among its 8 neighbours",
    "floor": "level: the current floor (0 is the overworld)",
    "inventory": "levels: items held now",
    "vital": "levels: current vitals",
    "attribute": "levels: experience and attributes",
}


def _vocabulary(world: World | str | None = None) -> str:
    counters = worlds.world_of(world).counters
    out = []
    for kind, what in _KINDS.items():
        names = ", ".join(c.name for c in counters if c.kind == kind)
        if not names:
            continue
        out.append(
            textwrap.fill(
                f"{kind} {what}: {names}", 96, initial_indent="  ", subsequent_indent="    "
            )
        )
    return "\n".join(out)


def _phrases(world: World | str | None = None) -> str:
    """The narration's event phrases and their counters, for prompts that spell the mapping out
    (a small model copes far better with a lookup table than with inferring names)."""
    phrases = worlds.world_of(world).words.phrases
    return "\n".join(f"  {phrase} -> {name}" for name, phrase in phrases.items())


@functools.lru_cache(maxsize=16)
def _read_prompt(version: str) -> tuple[str, str]:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", version):
        raise ValueError(f"prompt version must be a file stem like 'relabel_v1', got {version!r}")
    try:
        raw = (resources.files("oir") / "prompts" / f"{version}.txt").read_text("utf-8")
    except FileNotFoundError:
        raise ValueError(f"no prompt file oir/prompts/{version}.txt") from None
    match = re.fullmatch(r"=== system ===\n(.*)\n=== user ===\n(.*)", raw, re.S)
    if match is None:
        raise ValueError(f"prompt {version}: expected '=== system ===' and '=== user ===' sections")
    return match.group(1).strip(), match.group(2).strip()


def load_prompt(version: str = DEFAULT_PROMPT) -> tuple[str, str]:
    """The (system, user) templates of ``oir/prompts/<version>.txt``."""
    return _read_prompt(version)


def render_prompt(narrations: Sequence[str], version: str = DEFAULT_PROMPT,
                  world: World | str | None = None) -> list[dict[str, str]]:
    """Chat messages asking for proposals for the narrations (of ``world``'s segments), numbered 1..n."""
    system, user = load_prompt(version)
    blocks = "\n\n".join(f"[segment {i}]\n{text}" for i, text in enumerate(narrations, 1))
    return [
        {
            "role": "system",
            "content": system.replace("<<COUNTERS>>", _vocabulary(world)).replace("<<PHRASES>>", _phrases(world)),
        },
        {
            "role": "user",
            "content": user.replace("<<N>>", str(len(narrations))).replace("<<SEGMENTS>>", blocks),
        },
    ]
