"""The instruction buffer: unique verified instructions, their stats, and sampling priorities.

Verified relabels (hindsight text + task spec, design doc §2, §4) enter here. Each unique
instruction owns a **row**, a stable index into the trainer's device-side copies (a
:class:`~oir.tasks.TaskBank` of ``capacity`` rows and an embedding table): once a row is
assigned to an instruction it keeps it for the rest of the run, so the device copies only ever
grow by the rows :meth:`InstructionBuffer.drain_new` reports. Rows ``[0, reserved)`` belong to
the trainer (a free-play row, for instance) and are never assigned here.

What enters, in order of the checks (:meth:`InstructionBuffer.add`):

1. **Filters** (:func:`check_text`): ``too-short`` / ``too-long`` (words, characters) and
   ``vocabulary`` (printable ASCII prose only, no code-like characters or URLs, and at least one
   Craftax word). They catch LLM output that verifies but is no instruction a person would type.
2. **Same normalized text** as a row (case, punctuation and spacing ignored): ``merged`` when
   the spec is the same too, ``conflict`` when it differs. A conflict keeps the first meaning
   of the text; one text must not point the policy at two different rewards.
3. **Near duplicate**: same spec key and embedding cosine ``>= dedup_similarity`` with a row of
   that spec: ``merged``. The spec must match, because encoders put "collect 2 wood" and
   "collect 3 wood" close together although they are different tasks.
4. ``full`` when every non-reserved row is taken, else ``new``.

A merge increments the row's ``count`` (how often relabeling found it).

Priority rule (:meth:`InstructionBuffer.priorities`), per used non-reserved row::

    p = 0.1 + 4 * s * (1 - s) + 2 * LP

* ``s`` is the slow EMA of the row's success rate, 0.5 for a row never attempted, so a new
  instruction starts at the top of the success term and gets tried soon.
* ``4 s (1 - s)`` is 1 at 50% success and 0 at 0% or 100%: intermediate instructions, neither
  hopeless nor mastered, teach the most.
* ``LP = |fast EMA - slow EMA|`` is learning progress: instructions whose success is changing,
  up or down (forgetting), get more attention.
* ``0.1`` is a floor so that mastered and so-far-impossible instructions are still revisited.

A share of draws spread over all rows instead of the per-row floor, a new row's success taken
from attempted rows of its shape, and a weight toward rarely found achievements were each
measured and retired (no gain or a loss on held-out tasks; docs/notebook/).

The EMAs are of the per-update success rate ``successes / attempts``, updated by
:meth:`InstructionBuffer.record` only for rows attempted in that update. Both start at the first
observed rate, so a row has no learning progress until its success rate actually moves.
Unused and reserved rows have priority 0. The trainer samples rows in proportion to ``p``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oir import worlds
from oir.tasks import TaskSpec

# ---------------------------------------------------------------------------------------------
# Filters

FILTER_REASONS = ("too-short", "too-long", "vocabulary")
OUTCOMES = ("new", "merged", "conflict", *FILTER_REASONS, "full")

# Parts of counter names that say nothing about Craftax on their own: a text whose only Craftax
# word is "make" or "up" ("make it up") should not pass the vocabulary check.
_GENERIC_PARTS = {"collect", "make", "place", "near", "up", "inventory", "at",
                  # full Craftax's counter names hold everyday words too ("deep_thing", "enter_", colours)
                  "thing", "deep", "enter", "find", "open", "damage", "learn",
                  "red", "green", "blue", "pink", "cyan", "yellow"}
# Everyday words for the same things; the narrator and LLMs rarely use the counter names.
_SYNONYMS = {
    "tree", "trees", "log", "logs", "timber", "lumber", "chop", "wooden",
    "workbench", "workbenches", "bench", "crafting", "craft", "craftingtable",
    "cow", "cows", "beef", "meat", "steak", "hunt", "eat", "ate", "food", "hunger", "hungry",
    "drink", "drank", "water", "thirst", "thirsty", "lake", "pond",
    "sleep", "slept", "asleep", "nap", "rest", "wake", "woke", "awake", "bed", "night", "energy",
    "pickaxe", "pick", "axe", "sword", "tool", "tools", "weapon",
    "furnace", "smelt", "forge", "coal", "iron", "ore", "diamond", "stone", "cobblestone",
    "rock", "rocks", "mine", "dig", "quarry",
    "plant", "seed", "seeds", "sapling", "grow", "sow", "crop", "harvest", "forage", "garden",
    "zombie", "skeleton", "monster", "enemy", "kill", "slay", "fight", "attack", "defeat",
    "grass", "sand", "lava", "cave", "tunnel", "health", "heal", "vitals", "inventory",
    "block", "blocks", "gather",
}  # fmt: skip


@functools.cache
def _vocabulary() -> frozenset[str]:
    # Every world's counter words: a relabel in full Craftax speaks of gnomes and potions. Made on
    # first use, since importing full Craftax's constants takes seconds.
    names = {name for w in worlds.NAMES for name in worlds.get(w).counter_names}
    return frozenset({part for name in names for part in name.split("_")} - _GENERIC_PARTS | _SYNONYMS)


def __getattr__(name: str):
    if name == "VOCABULARY":  # the words that mark a text as about the game (check_text)
        return _vocabulary()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Whitelist, not blacklist: letters, digits, spaces and sentence punctuation. Everything else
# ({}<>[]\`=$_/#@*| ...) is code, markup, a counter name or a URL leaking into the text. A
# semicolon is allowed only as prose uses it, followed by a space ("chop wood; then rest"):
# human-written instructions use it that way, code puts it at line ends ("x();").
_ALLOWED = re.compile(r"(?:[A-Za-z0-9 .,!?'\"():-]|; (?=\S))*")
_URL = re.compile(r"(?i)\b(?:https?|ftp)\b|\bwww\.|\b[a-z0-9-]+\.(?:com|org|net|io|ai|dev)\b")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class FilterConfig:
    min_words: int = 2
    max_words: int = 24
    max_chars: int = 160
    dedup_similarity: float = 0.95  # cosine at or above which same-spec texts merge


DEFAULT_FILTERS = FilterConfig()


_TYPOGRAPHIC = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                              "\u2013": "-", "\u2014": "-"})


def clean_text(text: str) -> str:
    """Whitespace runs collapsed and typographic quotes and dashes made ASCII: the stored form.

    Language models write "don\u2019t" as often as "don't"; that is no reason to reject a text.
    """
    return " ".join(text.translate(_TYPOGRAPHIC).split())


def normalize_text(text: str) -> str:
    """Lower-case words and digits joined by single spaces; the key for exact-text duplicates.

    Also what :func:`oir.relabel.verify` uses to drop duplicates within one segment.
    """
    return " ".join(_WORD.findall(text.lower()))


def _in_vocabulary(word: str) -> bool:
    vocabulary = _vocabulary()
    if word in vocabulary:
        return True
    # Plurals without a stemmer: "saplings", "workbenches", "furnaces", "skeletons".
    return any(word.endswith(end) and word[: -len(end)] in vocabulary for end in ("es", "s"))


def check_text(text: str, config: FilterConfig = DEFAULT_FILTERS) -> str | None:
    """The reason ``text`` is rejected ("too-short", "too-long", "vocabulary"), or None."""
    stripped = clean_text(text)
    words = _WORD.findall(stripped.lower())
    if len(words) < config.min_words:
        return "too-short"
    if len(words) > config.max_words or len(stripped) > config.max_chars:
        return "too-long"
    if not _ALLOWED.fullmatch(stripped) or _URL.search(stripped):
        return "vocabulary"
    if not any(_in_vocabulary(w) for w in words):
        return "vocabulary"
    return None


# ---------------------------------------------------------------------------------------------
# The buffer


class InstructionBuffer:
    """Unique instructions in stable rows, with per-row stats and sampling priorities.

    ``encoder`` is any object with ``encode(list[str]) -> float32[n, dim]`` (L2-normalised
    rows), e.g. :func:`oir.encode.make_encoder`. Methods are thread-safe: relabeling may add
    from a worker thread while the training loop records and samples.
    """

    def __init__(
        self,
        capacity: int,
        encoder: Any,
        filters: FilterConfig = DEFAULT_FILTERS,
        reserved: int = 0,
        ema_fast: float = 0.2,
        ema_slow: float = 0.05,
    ):
        if not 0 <= reserved < capacity:
            raise ValueError(f"need 0 <= reserved < capacity, got reserved={reserved}, capacity={capacity}")
        if not 0 < ema_slow <= ema_fast <= 1:
            raise ValueError(f"need 0 < ema_slow <= ema_fast <= 1, got {ema_slow}, {ema_fast}")
        self.capacity = capacity
        self.reserved = reserved
        self.encoder = encoder
        self.filters = filters
        self.ema_fast = ema_fast
        self.ema_slow = ema_slow
        self._lock = threading.RLock()
        self._check_memo: dict[str, tuple[str, str | None, str]] = {}
        # (text key, spec key) -> the row it merged into by embedding: asked again, it merges there again
        self._near: dict[tuple[str, str], int] = {}
        self._next = reserved  # rows are handed out in order and never freed
        self._text: dict[int, str] = {}
        self._spec: dict[int, TaskSpec] = {}
        self._by_text: dict[str, int] = {}  # normalized text -> row
        self._by_spec: dict[str, list[int]] = {}  # spec key -> rows
        self._emb: np.ndarray | None = None  # float32[capacity, dim], allocated on first encode
        self._new: list[int] = []
        self.first_seen = np.full(capacity, -1, np.int64)
        self.last_seen = np.full(capacity, -1, np.int64)
        self.count = np.zeros(capacity, np.int64)
        self.attempts = np.zeros(capacity, np.int64)
        self.successes = np.zeros(capacity, np.int64)
        self.fast = np.zeros(capacity, np.float64)
        self.slow = np.zeros(capacity, np.float64)
        self._seen = np.zeros(capacity, bool)  # EMAs initialised (row attempted at least once)
        self.outcomes: Counter = Counter()
        self.near_merges = 0  # merges found by embedding rather than by exact text

    def __getstate__(self) -> dict:
        """Everything but the encoder and the lock (for checkpoints); reattach ``encoder`` after."""
        with self._lock:
            state = dict(self.__dict__)
        state["encoder"] = None
        state.pop("_check_memo", None)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        for retired in ("rarity", "revisit", "shape_prior", "shape", "found", "_asks"):  # older checkpoints
            state.pop(retired, None)
        self.__dict__.update({"_near": {}, **state})
        self._lock = threading.RLock()
        self._check_memo = {}

    # -- adding -------------------------------------------------------------------------------

    def add(self, text: str, spec: TaskSpec, step: int) -> tuple[int | None, str]:
        """Add one instruction; returns ``(row, outcome)`` (row is None unless new or merged)."""
        return self.add_many([(text, spec, step)])[0]

    def add_many(self, items: Sequence[tuple[str, TaskSpec, int]]) -> list[tuple[int | None, str]]:
        """Add instructions in order, embedding all texts new to the buffer in one encoder call."""
        with self._lock:
            texts, reasons, keys = zip(*(self._checked(t) for t, _, _ in items), strict=True) if items else ((), (), ())
            # One encoder call for every distinct text the buffer has not seen; a text seen
            # earlier in this batch is looked up, not embedded twice.
            pending: dict[str, str] = {}
            for text, reason, key, (_, spec, _) in zip(texts, reasons, keys, items, strict=True):
                if (reason is None and key not in self._by_text and key not in pending
                        and (key, spec.key()) not in self._near):
                    pending[key] = text
            vectors: dict[str, np.ndarray] = {}
            if pending:
                encoded = np.asarray(self.encoder.encode(list(pending.values())), np.float32)
                vectors = dict(zip(pending, encoded, strict=True))
                if self._emb is None:
                    self._emb = np.zeros((self.capacity, encoded.shape[1]), np.float32)

            results: list[tuple[int | None, str]] = []
            merges: list[tuple[int, int]] = []  # (row, step), counted together below
            for text, key, (_, spec, step), reason in zip(texts, keys, items, reasons, strict=True):
                result = (None, reason) if reason else self._place(text, key, spec, step, vectors, merges)
                self.outcomes[result[1]] += 1
                results.append(result)
            if merges:
                rows, steps = np.array(merges, np.int64).T
                np.add.at(self.count, rows, 1)
                np.maximum.at(self.last_seen, rows, steps)
            return results

    def _checked(self, text: str) -> tuple[str, str | None, str]:
        """(stored form, rejection reason or None, duplicate key) of a text, memoised: relabelers
        state the same texts again and again."""
        got = self._check_memo.get(text)
        if got is None:
            clean = clean_text(text)
            got = (clean, check_text(clean, self.filters), normalize_text(clean))
            if len(self._check_memo) < 1 << 16 and len(text) <= 4 * self.filters.max_chars:
                self._check_memo[text] = got
        return got

    def _place(
        self, text: str, key: str, spec: TaskSpec, step: int, vectors: dict[str, np.ndarray],
        merges: list[tuple[int, int]],
    ) -> tuple[int | None, str]:
        spec_key = spec.key()
        row = self._by_text.get(key)
        if row is not None:
            if self._spec[row].key() != spec_key:
                return None, "conflict"
            merges.append((row, step))
            return row, "merged"
        row = self._near.get((key, spec_key))
        if row is not None:  # merged by embedding before: the same text and spec merge the same way
            self.near_merges += 1
            merges.append((row, step))
            return row, "merged"
        vec = vectors[key]
        same_spec = self._by_spec.get(spec_key, [])
        if same_spec:
            assert self._emb is not None
            cand = self._emb[same_spec]
            cos = cand @ vec / np.maximum(np.linalg.norm(cand, axis=1) * np.linalg.norm(vec), 1e-12)
            best = int(np.argmax(cos))
            if cos[best] >= self.filters.dedup_similarity:
                self.near_merges += 1
                row = same_spec[best]
                if len(self._near) < 1 << 16:
                    self._near[(key, spec_key)] = row
                merges.append((row, step))
                return row, "merged"
        if self._next >= self.capacity:
            return None, "full"
        row = self._next
        self._next += 1
        assert self._emb is not None
        self._text[row], self._spec[row], self._emb[row] = text, spec, vec
        self._by_text[key] = row
        self._by_spec.setdefault(spec_key, []).append(row)
        self.first_seen[row] = self.last_seen[row] = step
        self.count[row] = 1
        self._new.append(row)
        return row, "new"

    def drain_new(self) -> list[int]:
        """Rows added since the last call, in order: what the trainer must push to the device."""
        with self._lock:
            out, self._new = self._new, []
            return out

    # -- stats and priorities -----------------------------------------------------------------

    def record(self, attempts: np.ndarray, successes: np.ndarray) -> None:
        """Fold in one update's per-row counts of ended attempts and of successes among them."""
        attempts = np.asarray(attempts, np.int64).reshape(-1)
        successes = np.asarray(successes, np.int64).reshape(-1)
        if attempts.shape != (self.capacity,) or successes.shape != (self.capacity,):
            raise ValueError(
                f"record wants two arrays of {self.capacity} rows, got {attempts.shape} and {successes.shape}"
            )
        if (attempts < 0).any() or (successes < 0).any() or (successes > attempts).any():
            raise ValueError("record needs 0 <= successes <= attempts in every row")
        with self._lock:
            hit = attempts > 0
            # Attempts on a row nobody owns mean the device bank and this buffer disagree; a
            # silent drop would hide that bug behind plausible-looking curves.
            stray = hit & ~self._used_mask(include_reserved=True)
            if stray.any():
                raise ValueError(f"attempts recorded for unassigned rows {np.flatnonzero(stray)[:8].tolist()}")
            self.attempts += attempts
            self.successes += successes
            rate = np.where(hit, successes / np.maximum(attempts, 1), 0.0)
            first = hit & ~self._seen
            self.fast[first] = self.slow[first] = rate[first]
            again = hit & self._seen
            self.fast[again] += self.ema_fast * (rate[again] - self.fast[again])
            self.slow[again] += self.ema_slow * (rate[again] - self.slow[again])
            self._seen |= hit

    def learning_progress(self) -> np.ndarray:
        """float64[capacity]: |fast EMA - slow EMA| of success (0 for rows never attempted)."""
        with self._lock:
            return np.abs(self.fast - self.slow)

    def priorities(self) -> np.ndarray:
        """float32[capacity] sampling weights (module docstring); 0 for unused and reserved rows."""
        with self._lock:
            used = self._used_mask(include_reserved=False)
            s = np.where(self._seen, self.slow, 0.5)
            p = 0.1 + 4.0 * s * (1.0 - s) + 2.0 * self.learning_progress()
            return np.where(used, p, 0.0).astype(np.float32)

    def _used_mask(self, include_reserved: bool) -> np.ndarray:
        mask = np.zeros(self.capacity, bool)
        mask[self.reserved : self._next] = True
        if include_reserved:
            mask[: self.reserved] = True
        return mask

    # -- access -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._next - self.reserved

    def rows(self) -> list[int]:
        """Used non-reserved rows, ascending (aligned with :meth:`texts`)."""
        return list(range(self.reserved, self._next))

    def texts(self) -> list[str]:
        """The instruction text of every used non-reserved row, in row order."""
        with self._lock:
            return [self._text[r] for r in range(self.reserved, self._next)]

    def text(self, row: int) -> str:
        return self._text[self._check_row(row)]

    def spec(self, row: int) -> TaskSpec:
        return self._spec[self._check_row(row)]

    def embedding(self, row: int) -> np.ndarray:
        """float32[dim]: the encoder's vector for the row's text (a copy)."""
        self._check_row(row)
        assert self._emb is not None
        return self._emb[row].copy()

    def lookup(self, text: str) -> int | None:
        """The row holding ``text`` (compared normalized), or None."""
        return self._by_text.get(normalize_text(text))

    def _check_row(self, row: int) -> int:
        if row not in self._text:
            raise KeyError(f"row {row} holds no instruction (used rows: {self.reserved}..{self._next - 1})")
        return row

    # -- output -------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per used non-reserved row (the lines :meth:`save` writes)."""
        with self._lock:
            prio = self.priorities()
            lp = self.learning_progress()
            out = []
            for r in self.rows():
                att = int(self.attempts[r])
                out.append({
                    "row": r,
                    "text": self._text[r],
                    "task": self._spec[r].to_json(),
                    "first_seen_step": int(self.first_seen[r]),
                    "last_seen_step": int(self.last_seen[r]),
                    "count": int(self.count[r]),
                    "attempts": att,
                    "successes": int(self.successes[r]),
                    "success_rate": int(self.successes[r]) / att if att else None,
                    "success_ema": float(self.slow[r]) if self._seen[r] else None,
                    "learning_progress": float(lp[r]),
                    "priority": float(prio[r]),
                })  # fmt: skip
            return out

    def save(self, path: str | Path) -> Path:
        """Write ``instructions.jsonl`` atomically; ``path`` is the file or its directory."""
        path = Path(path)
        if path.is_dir():
            path = path / "instructions.jsonl"
        lines = [json.dumps(rec) + "\n" for rec in self.records()]
        # Temp file in the same directory, then os.replace: a reader (or a crash) never sees a
        # half-written file.
        fd, tmp = tempfile.mkstemp(prefix=".instructions-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.writelines(lines)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def summary(self) -> dict[str, int]:
        """Counters for metrics.jsonl: unique instructions and cumulative add outcomes."""
        with self._lock:
            out = {"unique_instructions": len(self), "capacity": self.capacity - self.reserved}
            for name in ("new", "merged", "conflict", "full"):
                out[name] = self.outcomes[name]
            out["merged_near_duplicate"] = self.near_merges
            out["rejected"] = sum(self.outcomes[r] for r in FILTER_REASONS)
            for r in FILTER_REASONS:
                out[f"rejected_{r.replace('-', '_')}"] = self.outcomes[r]
            return out


def achievements_asked(spec: TaskSpec) -> np.ndarray:
    """Indices (into its world's achievements) of the achievements a spec's ``all`` clauses ask for
    at least once; a placement counts as its block's placing (``place_table_near_water``:
    ``place_table``)."""
    achievements = worlds.get(spec.world).achievements
    out = set()
    for c in spec.all:
        name = c.counter.split("_near_")[0] if c.counter.startswith("place_") else c.counter
        if name in achievements and (c.at_least or 0) >= 1:
            out.add(achievements.index(name))
    return np.array(sorted(out), np.int64)
