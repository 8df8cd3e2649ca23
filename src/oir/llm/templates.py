"""Relabel templates lifted from an LLM's relabels: an instruction pattern and a task-spec
pattern with typed slots.

A slow LLM cannot read every segment, but the segments it has not read mostly repeat ones it
has. So each of its relabels that verifies becomes a *template* (:func:`lift`), reusable on every
later segment::

    {"text": "collect {n} wood, then place a crafting table",
     "task": {"all": [{"counter": "collect_wood", "at_least": "{n}"},
                      {"counter": "place_table", "at_least": 1}], "ordered": true},
     "slots": {"n": "count"}}

A ``count`` slot (the only slot type) stands for an integer threshold: it fills exactly one
``at_least`` of the ``all`` clauses, and on a segment it binds to what the agent reached of that
clause's counter (how often an event happened, or the highest level held), capped at
:data:`MAX_SLOT`; it matches only where that is at least :data:`MIN_SLOT`. :func:`parse_template` validates a template once (it parses, its slots are
typed, declared and used, every placeholder is a slot); a template that fails is rejected with a
reason and never rewards. :class:`TemplateLibrary` instantiates its templates on a batch of
segments at env speed: a vectorized match over the segments' reached counters, then the Python
evaluator on the matches only. A template whose matches keep failing verification (its order,
prohibition or budget rarely holds) is retired. Nothing a template says is executed.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oir import worlds
from oir.narrate import Segment
from oir.relabel import parse_task
from oir.tasks import MAX_ALL, SpecError, first_success, parse_spec
from oir.worlds import World

SLOT_TYPES = ("count",)
MAX_SLOT = 9  # a bound count above this is stated as this many ("at least")
MIN_SLOT = 2  # a count slot states 2 or more: "collect 1 pieces of wood" is no instruction anyone gives
MAX_TEXT = 160
REJECT_REASONS = ("malformed", "too-long", "bad-slot", "unused-slot", "unknown-placeholder", "bad-spec", "duplicate")
_SLOT_NAME = re.compile(r"[a-z][a-z0-9_]{0,15}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# Retired: at least this many matched instantiations, fewer than this share of them verified.
RETIRE_AFTER, RETIRE_BELOW = 8, 0.5


class TemplateError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Template:
    text: str
    task: dict  # the spec pattern, slots as "{name}" strings
    slots: tuple[tuple[str, int], ...]  # (slot, index of the "all" clause whose at_least it fills)

    @property
    def key(self) -> str:
        return json.dumps({"text": self.text, "task": self.task}, sort_keys=True)

    def to_json(self) -> dict:
        return {"text": self.text, "task": self.task, "slots": {name: "count" for name, _ in self.slots}}

    def bind(self, values: dict[str, int]) -> tuple[str, dict]:
        """The instruction and spec with each slot set to its value."""
        text = _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.text)
        task = json.loads(json.dumps(self.task))
        for name, i in self.slots:
            task["all"][i]["at_least"] = values[name]
        return text, task


def parse_template(obj: Any, world: World | str | None = None) -> Template:
    """Validate a template (a dict or JSON text) of ``world`` (default Craftax-Classic);
    :class:`TemplateError` with a reason if it is not one."""
    if isinstance(obj, str | bytes):
        if len(obj) > 4 * MAX_TEXT + 2000:
            raise TemplateError("too-long", f"{len(obj)} characters")
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError) as e:
            raise TemplateError("malformed", f"not JSON ({e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not isinstance(obj.get("task"), dict):
        raise TemplateError("malformed", "needs a 'text' string, a 'task' object and optional 'slots'")
    if set(obj) - {"text", "task", "slots"}:
        raise TemplateError("malformed", f"unknown field {sorted(map(str, set(obj) - {'text', 'task', 'slots'}))[0]!r}")
    text = " ".join(obj["text"].split())
    if not text or len(text) > MAX_TEXT:
        raise TemplateError("too-long" if text else "malformed", f"text of {len(text)} characters (1 to {MAX_TEXT})")
    slots = obj.get("slots") or {}
    if not isinstance(slots, dict) or len(slots) > MAX_ALL:
        raise TemplateError("bad-slot", "'slots' must map at most a few slot names to types")
    for name, kind in slots.items():
        if not isinstance(name, str) or not _SLOT_NAME.fullmatch(name):
            raise TemplateError("bad-slot", "slot names are short lowercase words")
        if kind not in SLOT_TYPES:
            raise TemplateError("bad-slot", f"slot {name!r} has type {str(kind)[:20]!r} (known: {', '.join(SLOT_TYPES)})")
    used = _PLACEHOLDER.findall(text)
    if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
        raise TemplateError("unknown-placeholder", "unbalanced braces in the text")
    for name in used:
        if name not in slots:
            raise TemplateError("unknown-placeholder", f"{{{name[:20]}}} in the text is not a declared slot")
    task = obj["task"]
    try:
        depth_ok = len(json.dumps(task)) <= 4000
    except (ValueError, RecursionError, TypeError):
        depth_ok = False
    if not depth_ok:
        raise TemplateError("bad-spec", "the task pattern is not a small JSON object")
    # Slots may stand only for an at_least of an "all" clause: find them, then parse with 1s.
    fills: list[tuple[str, int]] = []
    clauses = task.get("all")
    if isinstance(clauses, list):
        for i, c in enumerate(clauses):
            if isinstance(c, dict) and isinstance(c.get("at_least"), str):
                m = re.fullmatch(r"\{([a-z][a-z0-9_]{0,15})\}", c["at_least"])
                if m is None or m.group(1) not in slots:
                    raise TemplateError("bad-slot", f"all[{i}].at_least is neither a count nor a declared slot")
                fills.append((m.group(1), i))
    names = [n for n, _ in fills]
    if len(set(names)) != len(names):
        raise TemplateError("bad-slot", "a slot fills more than one clause")
    for name in slots:
        if name not in names:
            raise TemplateError("unused-slot", f"slot {name!r} fills no at_least of 'all'")
        if name not in used:
            raise TemplateError("unused-slot", f"slot {name!r} is not in the text")
    t = Template(text, task, tuple(fills))
    try:
        parse_spec(t.bind({n: 1 for n in slots})[1], world)  # also rejects slots hidden anywhere else
    except SpecError as e:
        raise TemplateError("bad-spec", e.message if hasattr(e, "message") else str(e)) from None
    return t


def templates_problem(mode: str, path: Path | None) -> str | None:
    """Why ``--templates PATH`` cannot start a library under ``--llm-mode MODE`` (None: it can)."""
    if path is not None and (mode != "templates" or not Path(path).is_file()):
        return f"--templates needs --llm-mode templates and an existing file, got {path}"
    return None


_NUMBER = re.compile(r"\b(\d+|two|three|four|five|six|seven|eight|nine)\b", re.IGNORECASE)
_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}


def lift(text: str, task: dict) -> dict:
    """A template object from one of the model's verified relabels (``--llm-mode templates``):
    each count of 2 or more that the text states once, and exactly one ``all`` clause
    asks at least of, becomes a count slot; the rest stays as the model wrote it and was verified.

    "Collect three wood, then place a table" with ``collect_wood`` at least 3 becomes "Collect {n}
    wood, then place a table" with that clause's ``at_least`` the slot ``n``. Small models write
    fair relabels but poor templates (they copy the prompt's example); lifting keeps their
    wording and judgement and lets the program generalise the counts. The result is validated by
    :func:`parse_template` like any template.
    """
    task = json.loads(json.dumps(task))
    clauses = task.get("all") if isinstance(task, dict) and isinstance(task.get("all"), list) else []
    found = [(m, int(m.group(1)) if m.group(1).isdigit() else _NUMBER_WORDS[m.group(1).lower()])
             for m in _NUMBER.finditer(text)]
    stated = Counter(v for _, v in found)
    slots: dict[str, str] = {}
    parts, last = [], 0
    for m, value in found:
        at = [i for i, c in enumerate(clauses) if isinstance(c, dict) and c.get("at_least") == value]
        if value < 2 or stated[value] != 1 or len(at) != 1 or len(slots) >= MAX_ALL:
            continue
        name = f"n{len(slots) + 1}" if slots else "n"
        parts.append(text[last:m.start()] + "{" + name + "}")
        last = m.end()
        clauses[at[0]]["at_least"] = "{" + name + "}"
        slots[name] = "count"
    return {"text": "".join(parts) + text[last:], "task": task, "slots": slots}


def reached(segments: Sequence[Segment]) -> np.ndarray:
    """int[K, num_counters]: the highest value each counter reached in each segment (events: how
    often they happened; levels: the highest held after a step). The segments are of one world."""
    width = segments[0].world.num_counters if len(segments) else worlds.get().num_counters
    out = np.zeros((len(segments), width), np.int64)
    for k, s in enumerate(segments):
        if s.length:
            out[k] = np.concatenate([s.events.sum(axis=0), s.levels[1:].max(axis=0)])
    return out


class TemplateLibrary:
    """Templates in use, their statistics, and instantiation on segments (thread-safe)."""

    def __init__(self, max_templates: int = 512, world: World | str | None = None):
        self.max_templates = max_templates
        self.world = worlds.world_of(world)  # its templates name this world's counters
        self.templates: list[Template] = []
        self._keys: set[str] = set()
        self.matched: list[int] = []  # per template: instantiations that matched the reached counts
        self.verified: list[int] = []  # ... and of those, verified on the segment
        self.retired: list[bool] = []
        self.rejected: Counter = Counter()  # templates refused, by reason
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.templates)

    def add(self, obj: Any) -> Template | None:
        """Validate and keep a template; a rejected one is counted by reason (never raises)."""
        try:
            t = parse_template(obj, self.world)
        except TemplateError as e:
            with self._lock:
                self.rejected[e.reason] += 1
            return None
        with self._lock:
            if t.key in self._keys or len(self.templates) >= self.max_templates:
                self.rejected["duplicate"] += t.key in self._keys
                return None
            self._keys.add(t.key)
            self.templates.append(t)
            self.matched.append(0)
            self.verified.append(0)
            self.retired.append(False)
        return t

    def propose(self, segments: Sequence[Segment], reach: np.ndarray | None = None) -> list[list[dict]]:
        """Every live template's verified instantiation on every segment it matches."""
        with self._lock:
            live = [(j, t) for j, t in enumerate(self.templates) if not self.retired[j]]
        out: list[list[dict]] = [[] for _ in segments]
        if not live or not len(segments):
            return out
        reach = reached(segments) if reach is None else reach
        index = self.world.counter_index
        counters: dict[int, np.ndarray] = {}
        for j, t in live:
            need = np.ones(len(segments), bool)
            for c in t.task["all"]:
                col = reach[:, index[c["counter"]]]
                if "at_least" in c:
                    need &= col >= (MIN_SLOT if isinstance(c["at_least"], str) else c["at_least"])
            hits = np.flatnonzero(need)
            ok = 0
            for k in hits.tolist():
                values = {name: int(min(reach[k, index[t.task["all"][i]["counter"]]], MAX_SLOT))
                          for name, i in t.slots}
                text, task = t.bind(values)
                if k not in counters:
                    counters[k] = segments[k].counters()
                if first_success(parse_task(task, self.world.name), counters[k]) is not None:
                    out[k].append({"text": text[0].upper() + text[1:], "task": task})
                    ok += 1
            with self._lock:
                self.matched[j] += len(hits)
                self.verified[j] += ok
                if self.matched[j] >= RETIRE_AFTER and self.verified[j] < RETIRE_BELOW * self.matched[j]:
                    self.retired[j] = True
        return out

    def stats(self) -> dict[str, float]:
        with self._lock:
            live = [not r for r in self.retired]
            return {
                "llm_templates": float(len(self.templates)),
                "llm_templates_in_use": float(sum(v > 0 and x for v, x in zip(self.verified, live, strict=True))),
                "llm_templates_retired": float(sum(self.retired)),
                "llm_template_instantiations": float(sum(self.verified)),
                # matched a segment's counts, then failed verification (order, prohibition, budget)
                "llm_template_instantiations_flawed": float(sum(self.matched) - sum(self.verified)),
                **{f"llm_templates_rejected_{r}": float(self.rejected[r]) for r in REJECT_REASONS},
            }

    def save(self, path: Path) -> None:
        """``templates.jsonl``: one template per line with its statistics (retired ones too)."""
        with self._lock:
            rows = [{**t.to_json(), "matched": m, "verified": v, "retired": r}
                    for t, m, v, r in zip(self.templates, self.matched, self.verified, self.retired, strict=True)]
        tmp = Path(path).with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(path)

    def load(self, path: Path) -> int:
        """Templates from a ``templates.jsonl`` (validated again; retired ones stay out). How many were kept."""
        kept = 0
        for line in Path(path).read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                self.rejected["malformed"] += 1
                continue
            if isinstance(row, dict) and row.get("retired"):
                continue
            if isinstance(row, dict):
                row = {k: row[k] for k in ("text", "task", "slots") if k in row}
            kept += self.add(row) is not None
        return kept

