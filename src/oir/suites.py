"""Instruction suites: JSONL files of human-written instructions with their task specs.

One task a line (design doc §3)::

    {"id": "wood-then-table", "text": "Collect three wood, then put down a crafting table.",
     "task": {...}, "split": "test", "category": "sequence"}

Optional fields: ``task_id`` (lines of one task share it; defaults to ``id``) and
``paraphrase`` (true for the re-wordings of a task's canonical text; defaults to false).
Paraphrase lines share the task and differ in text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from oir import worlds
from oir.tasks import SpecError, TaskSpec, first_unknown, parse_spec, short_repr
from oir.worlds import World

SPLITS = ("train", "test")
STANDARD_SUITE = Path(__file__).resolve().parents[2] / "suites" / "standard.jsonl"
_FIELDS = {"id", "task_id", "text", "task", "split", "category", "paraphrase"}


class SuiteError(ValueError):
    """A bad suite line: the message names the file, the line and the field."""

    def __init__(self, path: str | Path, line: int | None, field: str, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {field}: {message}")


@dataclass(frozen=True)
class SuiteLine:
    id: str
    task_id: str
    text: str
    spec: TaskSpec
    split: str
    category: str
    paraphrase: bool
    line: int  # 1-based line number in its file
    # What a learner that trained on this file's train split has seen of a test line: a
    # "held-out task" (no train line has its spec) or a "held-out paraphrase" (a new wording of a
    # train task's spec); "train" for train lines. Set by the loader, over the whole file.
    holdout: str = ""


def _str_field(obj: dict, field: str, required: bool = True) -> str | None:
    value = obj.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SpecError(field, "missing or not a non-empty string")
    return value


def parse_line(obj: object, world: World | str | None = None) -> SuiteLine:
    """Validate one decoded suite line (without its position) of a suite for ``world``
    (default Craftax-Classic). Raises SpecError."""
    if not isinstance(obj, dict):
        raise SpecError("line", f"must be a JSON object, got {type(obj).__name__}")
    extra = first_unknown(obj, _FIELDS)
    if extra is not None:
        raise SpecError(extra, "unknown field")
    line_id = _str_field(obj, "id")
    text = _str_field(obj, "text")
    if "task" not in obj:
        raise SpecError("task", "missing")
    try:
        spec = parse_spec(obj["task"], world)
    except SpecError as e:
        raise SpecError(f"task.{e.field}" if e.field != "task" else "task", e.message) from None
    split = obj.get("split")
    if split not in SPLITS:
        raise SpecError("split", f"must be one of {', '.join(SPLITS)}, got {short_repr(split)}")
    category = _str_field(obj, "category")
    task_id = _str_field(obj, "task_id", required=False) or line_id
    paraphrase = obj.get("paraphrase", False)
    if not isinstance(paraphrase, bool):
        raise SpecError("paraphrase", f"must be true or false, got {short_repr(paraphrase)}")
    return SuiteLine(line_id, task_id, text, spec, split, category, paraphrase, 0)  # type: ignore[arg-type]


def check_suite(path: str | Path, world: World | str | None = None) -> tuple[list[SuiteLine], list[SuiteError]]:
    """Read a suite for ``world``, returning its good lines and one error for every bad line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        return [], [SuiteError(path, None, "file", e.strerror or str(e))]
    lines: list[SuiteLine] = []
    errors: list[SuiteError] = []
    seen_ids: dict[str, int] = {}
    task_of: dict[str, SuiteLine] = {}
    for n, row in enumerate(raw.split(b"\n"), start=1):
        if not row.strip():
            continue
        try:
            obj = json.loads(row)
        except (ValueError, RecursionError) as e:
            msg = str(e) if isinstance(e, ValueError) else "nested too deeply"
            errors.append(SuiteError(path, n, "json", f"broken JSON ({msg})"))
            continue
        try:
            item = replace(parse_line(obj, world), line=n)
        except SpecError as e:
            errors.append(SuiteError(path, n, e.field, e.message))
            continue
        if item.id in seen_ids:
            errors.append(SuiteError(path, n, "id", f"duplicate id {short_repr(item.id)} (first on line {seen_ids[item.id]})"))
            continue
        first = task_of.setdefault(item.task_id, item)
        if first.spec != item.spec:
            errors.append(SuiteError(path, n, "task", f"differs from line {first.line} of task {short_repr(item.task_id)}"))
            continue
        seen_ids[item.id] = n
        lines.append(item)
    if not lines and not errors:
        errors.append(SuiteError(path, None, "file", "has no task lines"))
    return _with_holdout(lines), errors


HELD_OUT_TASK, HELD_OUT_PARAPHRASE = "held-out task", "held-out paraphrase"


def _with_holdout(lines: list[SuiteLine]) -> list[SuiteLine]:
    train_specs = {x.spec.key() for x in lines if x.split == "train"}
    return [replace(x, holdout="train" if x.split == "train" else
                    HELD_OUT_PARAPHRASE if x.spec.key() in train_specs else HELD_OUT_TASK) for x in lines]


def load_suite(path: str | Path, splits: Iterable[str] | None = None,
               world: World | str | None = None) -> list[SuiteLine]:
    """Load a suite for ``world`` (default Craftax-Classic), raising :class:`SuiteError` on the
    first bad line; keep ``splits`` only."""
    lines, errors = check_suite(path, world)
    if errors:
        raise errors[0]
    if splits is not None:
        wanted = set(splits)
        bad = wanted - set(SPLITS)
        if bad:
            raise SuiteError(path, None, "split", f"unknown split {sorted(bad)[0]!r} (use train or test)")
        lines = [x for x in lines if x.split in wanted]
        if not lines:
            raise SuiteError(path, None, "split", f"no lines in split {', '.join(sorted(wanted))}")
    return lines


def suite_for(path: str | Path, world: World | str | None) -> Path:
    """The suite a run in ``world`` uses for ``--suite path``: the world's own standard suite where
    ``path`` is the options' default (Craftax-Classic's), else ``path``."""
    return worlds.world_of(world).suite if Path(path) == STANDARD_SUITE else Path(path)


def label_subset(lines: Iterable[SuiteLine], share: float, seed: int = 0) -> list[SuiteLine]:
    """The train lines of a share of the suite's train *tasks*, each task whole (its canonical
    text and every train paraphrase): the human labels a run may use (``--labels``).

    round(share x tasks) tasks are drawn (at least one when ``share`` > 0) by a permutation that
    depends on ``seed`` and the sorted task ids only, so every method given the same share and seed
    trains on the same lines, and a larger share holds every task of a smaller one. Test lines are
    never returned.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"label share must be in [0, 1], got {share}")
    train = [x for x in lines if x.split == "train"]
    tasks = sorted({x.task_id for x in train})
    if share == 0.0 or not tasks:
        return []
    import numpy as np  # the suite module is imported by tools that need no NumPy

    k = max(1, round(share * len(tasks)))
    order = np.random.default_rng(seed).permutation(len(tasks))
    keep = {tasks[i] for i in order[:k]}
    return [x for x in train if x.task_id in keep]
