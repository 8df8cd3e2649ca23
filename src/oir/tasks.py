"""Task specs: the one definition of schema, parser, Python evaluator and JAX evaluator.

A task spec is the executable meaning of an instruction (design doc §3)::

    {"all": [{"counter": "collect_wood", "at_least": 3}, {"counter": "place_table", "at_least": 1}],
     "ordered": true, "none": [{"counter": "eat_cow", "at_least": 1}], "within": 300}

Semantics, shared exactly by :func:`evaluate` (Python) and :func:`progress_step` (JAX):

* Counters are read after every env step ``t = 1, 2, ...`` since the instruction was given;
  event counters count from that moment, levels (``inventory_*``, vitals) are current values.
* A clause is true when its counter is ``>= at_least`` (or ``<= at_most``, an extension for
  levels such as "health at most 3").
* A clause of ``all`` is *latched* the first step it is true and stays satisfied, so
  "hold 3 wood, then craft" works although crafting spends the wood.
* ``ordered``: a clause may first become true only at a step where every earlier clause is
  latched or also true. Clauses may become true together; one becoming true before an earlier
  one fails the task at once (it could never succeed in order).
* ``none``: any clause true at a step fails the task at that step, success included.
* ``within``: the task fails at step ``within`` if it has not succeeded by then.
* Success is the first step where every clause of ``all`` is latched; only that step is
  rewarded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from oir import worlds
from oir.worlds import World

MAX_ALL = 8  # clauses in "all" (the JAX evaluator uses fixed-size arrays)
MAX_NONE = 4  # clauses in "none"
MAX_COUNT = 1_000_000  # largest at_least / at_most
MAX_WITHIN = 10_000_000  # largest step budget
_TOP_FIELDS = ("all", "ordered", "none", "within")


class SpecError(ValueError):
    """A task spec that does not follow §3. ``field`` names the offending part."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Clause:
    counter: str
    at_least: int | None = None
    at_most: int | None = None

    def holds(self, value: int) -> bool:
        if self.at_most is not None:
            return value <= self.at_most
        return value >= self.at_least  # type: ignore[operator]

    def to_json(self) -> dict[str, Any]:
        if self.at_most is not None:
            return {"counter": self.counter, "at_most": self.at_most}
        return {"counter": self.counter, "at_least": self.at_least}


@dataclass(frozen=True)
class TaskSpec:
    all: tuple[Clause, ...]
    ordered: bool = False
    none: tuple[Clause, ...] = ()
    within: int | None = None
    # The world whose counters the clauses name (oir.worlds): the same JSON means the same task
    # in any world that has its counters, so equality and key() leave it out.
    world: str = dataclass_field(default=worlds.DEFAULT, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"all": [c.to_json() for c in self.all]}
        if self.ordered:
            out["ordered"] = True
        if self.none:
            out["none"] = [c.to_json() for c in self.none]
        if self.within is not None:
            out["within"] = self.within
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}  # not the caches

    def key(self) -> str:
        """Canonical JSON text: equal specs give equal keys."""
        key = self.__dict__.get("_key")
        if key is None:  # made once per spec: verification and the buffer ask for it often
            key = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
            object.__setattr__(self, "_key", key)
        return key


# ---------------------------------------------------------------------------------------------
# Parser

_SHOW_LIMIT = 60  # characters of a bad value or field name quoted in an error message


def short_repr(value: Any, limit: int = _SHOW_LIMIT) -> str:
    """A bad value for a one-line error message: short, and safe on any input.

    ``repr`` is not: it recurses through deep nesting (RecursionError), refuses integers of
    more than 4300 digits (ValueError), and quotes megabytes of text verbatim.
    """
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        if abs(value) < 10**18:
            return str(value)
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}<integer of about {digits} digits>"
    if isinstance(value, str):
        text = repr(value[:limit])  # escapes make it up to 10 times longer
        return text if len(text) <= limit and len(value) <= limit else text[:limit] + "..."
    return type(value).__name__


def field_name(key: Any) -> str:
    """An object key as it appears in an error message: verbatim when short, printable text
    (``isprintable`` excludes every line break), else via :func:`short_repr`."""
    if isinstance(key, str) and key and key.isprintable() and len(key) <= _SHOW_LIMIT:
        return key
    return short_repr(key)


def first_unknown(obj: dict, known: Any) -> str | None:
    """The first key of ``obj`` not in ``known`` (text keys alphabetically, then any other
    key: a dict handed in from Python may mix key types, which do not sort together)."""
    extra = [k for k in obj if not (isinstance(k, str) and k in known)]
    if not extra:
        return None
    text = sorted(k for k in extra if isinstance(k, str))
    return field_name(text[0] if text else extra[0])


def _count(value: Any, field: str, lo: int, hi: int) -> int:
    # Language models write 3.0 for 3; accept integral floats, nothing else (bools are ints in
    # Python, and "true" is no count).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, f"must be an integer, got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise SpecError(field, f"must be an integer, got {short_repr(value)}")
        value = int(value)
    if value < lo:
        word = "negative" if lo == 0 else f"below {lo}"
        raise SpecError(field, f"must not be {word}, got {short_repr(value)}")
    if value > hi:
        raise SpecError(field, f"must be at most {hi}, got {short_repr(value)}")
    return value


def _unknown_counter(counter: str, world: World) -> str:
    """Why ``counter`` is refused in ``world``: another world's counter, or none at all."""
    for name in worlds.NAMES:
        if name != world.name and counter in worlds.get(name).counter_index:
            return f"counter {short_repr(counter)} belongs to the {name} world, not {world.name} (--env {name})"
    listing = "oir tasks list" + ("" if world.name == worlds.DEFAULT else f" --env {world.name}")
    return f"unknown counter {short_repr(counter)} (see `{listing}`)"


def _clause(obj: Any, field: str, world: World) -> Clause:
    if not isinstance(obj, dict):
        raise SpecError(field, f"must be an object with 'counter' and 'at_least', got {type(obj).__name__}")
    extra = first_unknown(obj, ("counter", "at_least", "at_most"))
    if extra is not None:
        raise SpecError(f"{field}.{extra}", "unknown field (expected counter, at_least or at_most)")
    counter = obj.get("counter")
    if not isinstance(counter, str):
        raise SpecError(f"{field}.counter", "missing or not a string")
    if counter not in world.counter_index:
        raise SpecError(f"{field}.counter", _unknown_counter(counter, world))
    has_least, has_most = "at_least" in obj, "at_most" in obj
    if has_least == has_most:
        raise SpecError(field, "needs exactly one of 'at_least' or 'at_most'")
    if has_least:
        return Clause(counter, at_least=_count(obj["at_least"], f"{field}.at_least", 0, MAX_COUNT))
    return Clause(counter, at_most=_count(obj["at_most"], f"{field}.at_most", 0, MAX_COUNT))


def _clauses(obj: Any, field: str, limit: int, world: World) -> tuple[Clause, ...]:
    if not isinstance(obj, list):
        raise SpecError(field, f"must be a list of clauses, got {type(obj).__name__}")
    if len(obj) > limit:
        raise SpecError(field, f"has {len(obj)} clauses, at most {limit} are supported")
    return tuple(_clause(c, f"{field}[{i}]", world) for i, c in enumerate(obj))


def parse_spec(obj: Any, world: World | str | None = None) -> TaskSpec:
    """Parse and validate a spec (a dict, or JSON text) against ``world``'s counters (default
    Craftax-Classic). Raises :class:`SpecError`."""
    world = worlds.world_of(world)
    if isinstance(obj, str | bytes):
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError) as e:
            raise SpecError("task", f"malformed JSON ({e})") from None
    if not isinstance(obj, dict):
        raise SpecError("task", f"must be a JSON object, got {type(obj).__name__}")
    extra = first_unknown(obj, _TOP_FIELDS)
    if extra is not None:
        raise SpecError(extra, "unknown field (expected all, ordered, none, within)")
    if "all" not in obj:
        raise SpecError("all", "missing (a spec needs at least one clause in 'all')")
    all_ = _clauses(obj["all"], "all", MAX_ALL, world)
    if not all_:
        raise SpecError("all", "is empty (a spec needs at least one clause)")
    ordered = obj.get("ordered", False)
    if ordered is None:
        ordered = False
    if not isinstance(ordered, bool):
        raise SpecError("ordered", f"must be true or false, got {short_repr(ordered)}")
    none = obj.get("none")
    none = () if none is None else _clauses(none, "none", MAX_NONE, world)
    within = obj.get("within")
    if within is not None:
        within = _count(within, "within", 1, MAX_WITHIN)
    return TaskSpec(all=all_, ordered=ordered, none=none, within=within, world=world.name)


# ---------------------------------------------------------------------------------------------
# Python evaluator


@dataclass(frozen=True)
class Outcome:
    status: str  # "success" | "fail" | "pending"
    step: int | None = None  # the step (1-based, since the instruction) it ended at
    reason: str | None = None  # for fails: "none", "order" or "budget"


def evaluate(spec: TaskSpec, counters: np.ndarray | Sequence[Sequence[int]]) -> Outcome:
    """Evaluate ``spec`` on a trace of counter vectors.

    ``counters[t - 1]`` is the full counter vector (layout of :mod:`oir.events`) after step
    ``t`` since the instruction: events cumulative since the instruction, levels current.

    Vectorized over the trace (relabel verification runs it on every proposal of every segment):
    each clause's first-true step decides everything, because clauses latch. On one step the
    checks go none, order, success, budget, as in the JAX evaluator.
    """
    return outcomes([spec], counters)[0]


def outcomes(specs: Sequence[TaskSpec], counters: np.ndarray | Sequence[Sequence[int]]) -> list[Outcome]:
    """:func:`evaluate` of each spec on one trace: every clause of every spec in one numpy pass."""
    c = np.asarray(counters)
    n = len(c)
    never = n + 1
    if n and specs:
        bank = np.concatenate([_bank(s) for s in specs], axis=1)
        v = c[:, bank[0]]
        hit = (v >= bank[1]) & (v <= bank[2])
        t = hit.argmax(axis=0)  # the first True (argmax stops there); 0 also when none is
        firsts = np.where(hit.any(axis=0), t + 1, never).tolist()
    else:
        firsts = [never] * sum(len(s.all) + len(s.none) for s in specs)
    out, i = [], 0
    for spec in specs:
        k = len(spec.all)
        first, none_first = firsts[i:i + k], firsts[i + k:i + k + len(spec.none)]
        i += k + len(spec.none)
        t_success = max(first)
        t_none = min(none_first, default=never)
        # Ordered: clause j turning true while an earlier clause is still false is a violation.
        t_order = min((f for j, f in enumerate(first) if f < never and any(e > f for e in first[:j])),
                      default=never) if spec.ordered else never
        t_budget = max(spec.within, 1) if spec.within is not None else never
        ends = [(t_none, 0, "fail", "none"), (t_order, 1, "fail", "order"),
                (t_success, 2, "success", None), (t_budget, 3, "fail", "budget")]
        t_end, _, status, reason = min(ends)
        out.append(Outcome(status, t_end, reason) if t_end <= n else _PENDING)
    return out


_PENDING = Outcome("pending")
_BIG = np.iinfo(np.int64).max


def _bank(spec: TaskSpec) -> np.ndarray:
    """int64[3, clauses]: the spec's clauses (all, then none) as counter columns, lower and upper
    bounds. Made once per spec."""
    bank = spec.__dict__.get("_bank")
    if bank is None:
        index = worlds.get(spec.world).counter_index
        bank = np.array([(index[cl.counter], -_BIG, cl.at_most) if cl.at_most is not None
                         else (index[cl.counter], cl.at_least, _BIG) for cl in (*spec.all, *spec.none)],
                        np.int64).reshape(-1, 3).T
        object.__setattr__(spec, "_bank", bank)
    return bank


def first_success(spec: TaskSpec, counters: np.ndarray) -> int | None:
    """The step at which ``spec`` first succeeds on a trace, or None."""
    out = evaluate(spec, counters)
    return out.step if out.status == "success" else None


def first_successes(specs: Sequence[TaskSpec], counters: np.ndarray) -> list[int | None]:
    """:func:`first_success` of each spec on one trace, in one pass."""
    return [o.step if o.status == "success" else None for o in outcomes(specs, counters)]


# ---------------------------------------------------------------------------------------------
# JAX evaluator: a bank of specs as fixed-size arrays, and a per-env progress state.

FAIL_NONE, FAIL_ORDER, FAIL_BUDGET = 1, 2, 3
FAIL_REASONS = {FAIL_NONE: "none", FAIL_ORDER: "order", FAIL_BUDGET: "budget"}
NO_BUDGET = np.iinfo(np.int32).max


@struct.dataclass
class TaskBank:
    """``M`` specs as padded arrays. Index ``m`` of every field describes spec ``m``.

    A clause is ``sign * counter >= sign * threshold`` (sign +1 for at_least, -1 for at_most);
    padding clauses are invalid and count as satisfied.
    """

    all_idx: jax.Array  # int32[M, MAX_ALL]
    all_thr: jax.Array  # int32[M, MAX_ALL]
    all_sign: jax.Array  # int32[M, MAX_ALL]
    all_valid: jax.Array  # bool[M, MAX_ALL]
    ordered: jax.Array  # bool[M]
    none_idx: jax.Array  # int32[M, MAX_NONE]
    none_thr: jax.Array  # int32[M, MAX_NONE]
    none_sign: jax.Array  # int32[M, MAX_NONE]
    none_valid: jax.Array  # bool[M, MAX_NONE]
    within: jax.Array  # int32[M]; int32 max when there is no budget

    @property
    def size(self) -> int:
        return self.ordered.shape[0]

    @classmethod
    def from_specs(cls, specs: Sequence[TaskSpec], capacity: int | None = None) -> TaskBank:
        """Pack specs; ``capacity`` pads the bank so it can grow without a recompile."""
        return jax.tree.map(jnp.asarray, cls.pack(specs, capacity))

    @classmethod
    def pack(cls, specs: Sequence[TaskSpec], capacity: int | None = None) -> TaskBank:
        """Like :meth:`from_specs`, with numpy leaves: host-side packing that never waits on the device."""
        m = max(capacity or 0, len(specs), 1)

        kinds = {s.world for s in specs}
        if len(kinds) > 1:
            raise ValueError(f"a bank holds one world's specs, got {sorted(kinds)}")

        def pack(clause_lists: list[tuple[Clause, ...]], width: int):
            idx = np.zeros((m, width), np.int32)
            thr = np.zeros((m, width), np.int32)
            sign = np.ones((m, width), np.int32)
            valid = np.zeros((m, width), bool)
            for r, clauses in enumerate(clause_lists):
                for k, c in enumerate(clauses):
                    idx[r, k] = worlds.get(specs[r].world).counter_index[c.counter]
                    below = c.at_most is not None
                    thr[r, k] = c.at_most if below else c.at_least
                    sign[r, k] = -1 if below else 1
                    valid[r, k] = True
            return idx, thr, sign, valid

        a = pack([s.all for s in specs], MAX_ALL)
        n = pack([s.none for s in specs], MAX_NONE)
        ordered = np.zeros(m, bool)
        within = np.full(m, NO_BUDGET, np.int32)
        for r, s in enumerate(specs):
            ordered[r] = s.ordered
            if s.within is not None:
                within[r] = s.within
        return cls(*a, ordered, *n, within)

    def take(self, index: jax.Array) -> TaskBank:
        return jax.tree.map(lambda x: x[index], self)


@struct.dataclass
class Progress:
    """Where one env (or a batch, with a leading axis) stands on its current task."""

    counts: jax.Array  # int32[num_events]: events since the instruction
    latched: jax.Array  # bool[MAX_ALL]
    t: jax.Array  # int32: steps since the instruction


def progress_init(batch_shape: tuple[int, ...] = (), num_events: int | None = None) -> Progress:
    """No progress; ``num_events`` is the world's (default Craftax-Classic's)."""
    return Progress(
        counts=jnp.zeros((*batch_shape, num_events or worlds.get().num_events), jnp.int32),
        latched=jnp.zeros((*batch_shape, MAX_ALL), bool),
        t=jnp.zeros(batch_shape, jnp.int32),
    )


def progress_step(
    spec: TaskBank, prog: Progress, events: jax.Array, levels: jax.Array
) -> tuple[Progress, jax.Array, jax.Array, jax.Array]:
    """Advance one env's progress by one step (``spec`` is one row of a bank).

    Returns ``(progress, success, fail, fail_reason)``; ``fail_reason`` is 0 or one of
    ``FAIL_*``. The caller restarts the progress once the task ends.
    """
    counts = prog.counts + events
    t = prog.t + 1
    counters = jnp.concatenate([counts, levels])
    now = (spec.all_sign * counters[spec.all_idx] >= spec.all_sign * spec.all_thr) & spec.all_valid
    ok = prog.latched | now | ~spec.all_valid
    earlier_ok = jnp.concatenate([jnp.ones((1,), bool), jnp.cumprod(ok[:-1]).astype(bool)])
    violation = spec.ordered & jnp.any(now & ~prog.latched & ~earlier_ok)
    latched = prog.latched | now
    none_hit = jnp.any(
        (spec.none_sign * counters[spec.none_idx] >= spec.none_sign * spec.none_thr) & spec.none_valid
    )
    complete = jnp.all(latched | ~spec.all_valid)
    success = complete & ~none_hit & ~violation
    over = t >= spec.within
    fail = none_hit | violation | (over & ~success)
    reason = jnp.select(
        [none_hit, violation, fail], [FAIL_NONE, FAIL_ORDER, FAIL_BUDGET], 0
    ).astype(jnp.int32)
    return Progress(counts, latched, t), success, fail, reason


def progress_restart(prog: Progress, mask: jax.Array) -> Progress:
    """Zero the progress of the envs where ``mask`` holds (a new instruction starts)."""
    fresh = progress_init(mask.shape, prog.counts.shape[-1])

    def pick(new, old):
        return jnp.where(mask.reshape(mask.shape + (1,) * (old.ndim - mask.ndim)), new, old)

    return jax.tree.map(pick, fresh, prog)


def counters_from_trace(events: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Counter vectors for the Python evaluator from per-step events and levels.

    ``events`` is [T, num_events] (per step), ``levels`` [T, num_levels] of one world; the
    result is [T, num_counters] with events cumulative from the first row.
    """
    worlds.of_layout(events.shape[1], levels.shape[1])  # a known world's layout
    return np.concatenate([np.cumsum(events, axis=0), levels], axis=1)
