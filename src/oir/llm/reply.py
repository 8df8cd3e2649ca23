"""What the LLM relabeler asks a model to reply, and how it reads the reply.

:func:`response_format` and :func:`reply_schema` give the request's ``response_format`` for a
JSON mode (:data:`JSON_MODES`), so a server that constrains its output can make malformed JSON
and unknown counters impossible. :func:`parse_reply` turns a model's reply into one proposal
list per segment. It only ever calls ``json.loads``: nothing the model says is executed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from oir import worlds
from oir.relabel import Flawed
from oir.worlds import World

# A reply longer than this is not a batch of instructions (a model stuck in a loop, say);
# it is refused before any parsing so its cost stays bounded.
MAX_REPLY_CHARS = 200_000
# How many "{" / "[" starts parse_reply tries when it hunts for JSON inside prose: each try
# may scan the rest of the text, so an unbounded hunt is quadratic on adversarial replies.
_MAX_JSON_STARTS = 64


# ---------------------------------------------------------------------------------------------
# Constrained output

JSON_MODES = ("off", "object", "schema")


def reply_schema(max_proposals: int = 8, world: World | str | None = None) -> dict[str, Any]:
    """JSON schema of a reply: segments with proposals whose counters are the vocabulary's names.

    Grammar-constrained decoding with it makes malformed JSON and unknown counters impossible;
    whether a spec *holds* is still for verification to say.
    """
    clause = {
        "type": "object",
        "properties": {
            "counter": {"enum": list(worlds.world_of(world).counter_names)},
            "at_least": {"type": "integer"},
        },
        "required": ["counter", "at_least"],
        "additionalProperties": False,
    }
    task = {
        "type": "object",
        "properties": {
            "all": {"type": "array", "items": clause, "minItems": 1, "maxItems": 4},
            "ordered": {"type": "boolean"},
            "none": {"type": "array", "items": clause, "maxItems": 2},
            "within": {"type": "integer"},
        },
        "required": ["all"],
        "additionalProperties": False,
    }
    proposal = {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 160}, "task": task},
        "required": ["text", "task"],
        "additionalProperties": False,
    }
    return _segments_of(proposal, max_proposals)


def _segments_of(proposal: dict[str, Any], max_proposals: int) -> dict[str, Any]:
    """The reply around a proposal schema: ``{"segments": [{"id", "proposals": [...]}, ...]}``."""
    segment = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            # At least one: under a grammar a small model takes the shortest way out, an empty
            # list (saved segments always have an event). At most a few: it may otherwise list
            # proposals until max_tokens.
            "proposals": {"type": "array", "items": proposal, "minItems": 1, "maxItems": max_proposals},
        },
        "required": ["id", "proposals"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"segments": {"type": "array", "items": segment}},
        "required": ["segments"],
        "additionalProperties": False,
    }


def response_format(mode: str, max_proposals: int = 8, world: World | str | None = None) -> dict[str, Any] | None:
    """The request's ``response_format`` for a JSON mode.

    ``off``: none. ``object``: ``{"type": "json_object"}``, OpenAI's JSON mode (llama.cpp's and
    llama-cpp-python's servers, vLLM, Ollama). ``schema``: :func:`reply_schema` in the form
    llama-cpp-python's server takes, ``{"type": "json_object", "schema": ...}``, which it
    compiles into a grammar.
    """
    if mode == "off":
        return None
    if mode == "object":
        return {"type": "json_object"}
    if mode == "schema":
        return {"type": "json_object", "schema": reply_schema(max_proposals, world)}
    raise ValueError(f"unknown LLM JSON mode {mode!r} (choose from {', '.join(JSON_MODES)})")


def for_segments(fmt: dict[str, Any] | None, n: int) -> dict[str, Any] | None:
    """``fmt`` for a request about ``n`` segments: a reply schema's segment list then holds
    exactly ``n``. Unbounded, the grammar lets a small model go on writing segments it was never
    shown until ``max_tokens``: one way a reply runs that long (a 2M-step run's first template
    request for 4 segments ran to its 2,047-token cap, six minutes on a busy core, and came back
    after training had ended)."""
    if not fmt or "schema" not in fmt:
        return fmt
    schema = fmt["schema"]
    segments = {**schema["properties"]["segments"], "minItems": n, "maxItems": n}
    return {**fmt, "schema": {**schema, "properties": {**schema["properties"], "segments": segments}}}


# ---------------------------------------------------------------------------------------------
# Reply parsing

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.S)
_OPENER = re.compile(r"[\[{]")


def _json_values(text: str) -> list[Any]:
    """JSON values found in ``text``: in fenced blocks, then in the whole text. A chunk that is
    not JSON as a whole is scanned for values starting at its first few "{" or "[", outermost
    first, so prose around one object still yields that object."""
    found: list[Any] = []
    decoder = json.JSONDecoder()
    for chunk in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        chunk = chunk.strip()
        try:
            found.append(json.loads(chunk))
            continue
        except (ValueError, RecursionError):
            pass
        pos = 0
        for _ in range(_MAX_JSON_STARTS):
            match = _OPENER.search(chunk, pos)
            if match is None:
                break
            try:
                value, end = decoder.raw_decode(chunk, match.start())
            except (ValueError, RecursionError):
                pos = match.start() + 1
                continue
            found.append(value)
            pos = end  # values nested inside this one are not separate answers
    return found


def _segment_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(?:segment\s*)?#?(\d{1,6})\s*", value, re.I)
        return int(m.group(1)) if m else None
    return None


def _proposal_list(value: Any) -> list[Any]:
    if isinstance(value, dict) and "proposals" in value:
        value = value["proposals"]
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict) and "task" in value:
        return [value]  # one proposal not wrapped in a list
    return [Flawed("malformed-json")]


def _from_items(items: list[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for pos, item in enumerate(items, 1):
        if not isinstance(item, dict):
            continue  # that segment ends up missing, hence Flawed("empty")
        # The model's own numbering when it gives one; its list order when it does not.
        i = _segment_id(item.get("id", item.get("segment", pos)))
        if i is not None:
            out.setdefault(i, []).extend(_proposal_list(item))
    return out


def _looks_like_segments(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, dict) and "proposals" in v for v in value)


def _by_segment(value: Any, n: int) -> tuple[int, dict[int, list[Any]]] | None:
    """(rank, segment number -> proposals) for a value of a known shape, else None.

    Lower ranks are surer readings: the documented object beats a bare list, which in prose
    may be a stray "[1]".
    """
    if isinstance(value, dict) and "segments" in value:
        segments = value["segments"]
        if isinstance(segments, list):
            return 0, _from_items(segments)
        if isinstance(segments, dict):  # {"segments": {"1": [...], "2": [...]}}
            out: dict[int, list[Any]] = {}
            for k, v in segments.items():
                i = _segment_id(k)
                if i is not None:
                    out.setdefault(i, []).extend(_proposal_list(v))
            return 0, out
        return None
    if isinstance(value, list) and _looks_like_segments(value):
        return 1, _from_items(value)
    if n == 1 and isinstance(value, dict) and "proposals" in value:
        return 2, {1: _proposal_list(value)}
    if n == 1 and isinstance(value, list):
        return 3, {1: list(value)}  # the bare list of proposals a one-segment request may get
    return None


def parse_reply(text: str, n_segments: int, max_proposals: int = 32) -> list[list[Any]]:
    """One proposal list per segment from a model's reply to a batch of ``n_segments``.

    Tolerates markdown fences and prose around the JSON. Accepts ``{"segments": [{"id": i,
    "proposals": [...]}, ...]}`` and, for one segment, a bare list of proposals. Proposals are
    returned as the model wrote them (``verify`` judges them); known failures become
    :class:`~oir.relabel.Flawed`: an empty reply gives ``Flawed("empty")`` for every segment, an
    unparseable one ``Flawed("malformed-json")``, a segment missing from the reply
    ``Flawed("empty")``. At most ``max_proposals`` are kept per segment, markers included.
    Never raises.
    """
    keep = max(max_proposals, 0)
    if not isinstance(text, str) or not text.strip():
        return [[Flawed("empty")][:keep] for _ in range(n_segments)]
    readings = []
    if len(text) <= MAX_REPLY_CHARS:
        readings = [
            r for r in (_by_segment(v, n_segments) for v in _json_values(text)) if r is not None
        ]
    if not readings:
        return [[Flawed("malformed-json")][:keep] for _ in range(n_segments)]
    by_segment = min(readings, key=lambda r: r[0])[1]  # the surest reading, the first of equals
    return [by_segment.get(i, [Flawed("empty")])[:keep] for i in range(1, n_segments + 1)]
