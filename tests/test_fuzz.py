"""Fuzz tests (hypothesis) for the three parsers of untrusted input.

* :func:`oir.tasks.parse_spec`: a TaskSpec or a :class:`SpecError` with a one-line message.
* :func:`oir.suites.check_suite` / :func:`load_suite` and ``oir tasks check``: good lines, or
  :class:`SuiteError` naming the file and line; never a traceback.
* :func:`oir.llm.parse_reply`: never raises; one list per segment, each at most
  ``max_proposals`` long.

Any other exception type (TypeError, RecursionError, the ValueError ``str()`` raises on an
integer of more than 4300 digits, ...) escapes the contract checks and fails the test.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from oir.cli import main
from oir.events import COUNTER_INDEX
from oir.llm import MAX_REPLY_CHARS, parse_reply
from oir.relabel import Flawed
from oir.suites import SPLITS, SuiteError, SuiteLine, check_suite, load_suite, parse_line
from oir.tasks import MAX_ALL, MAX_COUNT, MAX_NONE, MAX_WITHIN, SpecError, TaskSpec, parse_spec

COUNTER_NAMES = sorted(COUNTER_INDEX)
DEEP = 10_000  # nesting depth of the directly built deep values (far past the recursion limit)
MAX_MESSAGE = 400  # an error message longer than this quotes too much of the input
SLOW_S = 10.0  # one call taking longer than this counts as a hang (generous: the machine is shared)

# ---------------------------------------------------------------------------------------------
# Strategies

HUGE_INTS = [10**400, -(10**400), 10**5000, -(10**5000), 2**63, -(2**63) - 1, 2**31, -1, 0]
# As a strategy that builds them: hypothesis reprs the elements of sampled_from, and repr
# refuses integers of more than 4300 digits.
huge_ints = st.builds(lambda sign, exp, off: sign * (10**exp + off), st.sampled_from([1, -1]),
                      st.sampled_from([18, 19, 31, 63, 400, 5000]), st.integers(-1, 1))
KEYS = st.sampled_from(
    ["all", "ordered", "none", "within", "counter", "at_least", "at_most", "id", "text", "task",
     "split", "category", "task_id", "paraphrase", "segments", "proposals", "segment", "1"]
) | st.text(max_size=12)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(COUNTER_NAMES)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)
# Values json.dumps can write (it cannot write integers of more than 4300 digits).
dumpable = st.recursive(
    scalars.filter(lambda v: not (isinstance(v, int) and abs(v) >= 10**4000)),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)


def deep_list(depth: int = DEEP, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_dict(depth: int = DEEP, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"all": value}
    return value


@st.composite
def clauses(draw: st.DrawFn) -> dict[str, Any]:
    bound = "at_most" if draw(st.booleans()) else "at_least"
    value: Any = draw(st.integers(0, MAX_COUNT))
    if draw(st.booleans()):
        value = float(value)  # models write 3.0 for 3
    return {"counter": draw(st.sampled_from(COUNTER_NAMES)), bound: value}


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"all": draw(st.lists(clauses(), min_size=1, max_size=MAX_ALL))}
    if draw(st.booleans()):
        spec["ordered"] = draw(st.booleans() | st.none())
    if draw(st.booleans()):
        spec["none"] = draw(st.lists(clauses(), max_size=MAX_NONE) | st.none())
    if draw(st.booleans()):
        spec["within"] = draw(st.integers(1, MAX_WITHIN) | st.none())
    return spec


# The ways a mutated value may be bad: anything JSON-like, huge or deep, or a near miss.
bad_values = (
    json_values
    | huge_ints
    | st.sampled_from([MAX_COUNT + 1, MAX_WITHIN + 1, -1, 0.5, 1e300, -1e300, math.nan, math.inf])
    | st.builds(deep_list, st.sampled_from([50, DEEP]))
    | st.builds(deep_dict, st.sampled_from([50, DEEP]))
    | st.text(min_size=1).map(lambda s: s * 1000)  # a long string
)


@st.composite
def near_valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec with one thing changed: a field replaced, dropped or added, at the top or
    in one clause."""
    spec = draw(valid_specs())
    target: dict[str, Any] = spec
    clause_lists = [spec[k] for k in ("all", "none") if isinstance(spec.get(k), list) and spec[k]]
    if clause_lists and draw(st.booleans()):
        target = draw(st.sampled_from(draw(st.sampled_from(clause_lists))))
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "add" or not target:
        key = draw(KEYS | st.text(min_size=1).map(lambda s: s * 100) | st.sampled_from(["a\nb", "x\u2028y", ""]))
        target[key] = draw(bad_values)
    else:
        key = draw(st.sampled_from(sorted(target)))
        if action == "drop":
            del target[key]
        else:
            target[key] = draw(bad_values)
    return spec


# ---------------------------------------------------------------------------------------------
# Contract checks


def assert_one_line(message: str) -> None:
    assert message.strip(), "empty error message"
    assert len(message.splitlines()) == 1, f"message is not one line: {message[:200]!r}"
    assert len(message) <= MAX_MESSAGE, f"message of {len(message)} chars: {message[:200]!r}..."


def check_spec(value: Any) -> TaskSpec | None:
    """parse_spec's contract: a TaskSpec (that round-trips) or exactly SpecError."""
    start = time.perf_counter()
    try:
        spec = parse_spec(value)
    except SpecError as e:
        assert type(e) is SpecError
        assert isinstance(e.field, str) and e.field
        assert_one_line(str(e))
        assert str(e).startswith(e.field + ": ")
        return None
    finally:
        assert time.perf_counter() - start < SLOW_S
    assert type(spec) is TaskSpec
    assert 1 <= len(spec.all) <= MAX_ALL and len(spec.none) <= MAX_NONE
    assert spec.within is None or 1 <= spec.within <= MAX_WITHIN
    for c in spec.all + spec.none:
        assert c.counter in COUNTER_INDEX
        assert (c.at_least is None) != (c.at_most is None)
        bound = c.at_least if c.at_most is None else c.at_most
        assert type(bound) is int and 0 <= bound <= MAX_COUNT
    assert parse_spec(spec.to_json()) == spec
    assert parse_spec(spec.key()) == spec
    return spec


# ---------------------------------------------------------------------------------------------
# 1. Task specs


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_spec_random_values(value):
    check_spec(value)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["all", "ordered", "none", "within"]) | KEYS, json_values, max_size=5))
def test_spec_random_objects(value):
    check_spec(value)


@settings(max_examples=100, deadline=None)
@given(valid_specs())
def test_spec_valid_parses(value):
    spec = check_spec(value)
    assert spec is not None
    assert len(spec.all) == len(value["all"])
    assert spec.within == value.get("within")
    assert spec.ordered is bool(value.get("ordered"))
    # The same spec as JSON text and as UTF-8 bytes.
    assert check_spec(json.dumps(value)) == spec
    assert check_spec(json.dumps(value, ensure_ascii=False).encode()) == spec


@settings(max_examples=500, deadline=None)
@given(near_valid_specs())
def test_spec_near_valid(value):
    check_spec(value)
    # Through JSON text as well, where the value can be written (not: ints > 4300 digits, or
    # the directly built deep values, which json.dumps refuses with RecursionError).
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        return
    check_spec(text)


@settings(max_examples=200, deadline=None)
@given(st.text() | st.binary() | dumpable.map(json.dumps) | dumpable.map(lambda v: json.dumps(v).encode("utf-16")))
def test_spec_random_text(text):
    check_spec(text)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(deep_list(), id="deep-list"),
        pytest.param(deep_dict(), id="deep-dict"),
        pytest.param({"all": deep_list()}, id="all-deep"),
        pytest.param({"all": [deep_dict()]}, id="clause-deep"),
        pytest.param({"all": [{"counter": "collect_wood", "at_least": 1}], "ordered": deep_list()}, id="ordered-deep"),
        pytest.param({"all": [{"counter": "collect_wood", "at_least": 1}], "ordered": deep_dict()}, id="ordered-deep-dict"),
        pytest.param({"all": [{"counter": "collect_wood", "at_least": 1}], "within": deep_list()}, id="within-deep"),
        pytest.param({"all": [{"counter": deep_list(), "at_least": 1}]}, id="counter-deep"),
        pytest.param({"all": [{"counter": "collect_wood", "at_least": deep_dict()}]}, id="count-deep"),
        pytest.param({"all": [{"counter": "collect_wood", "at_least": 1}], "x": deep_list()}, id="unknown-deep"),
        pytest.param("[" * 100_000, id="text-open-brackets"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="text-deep-list"),
        pytest.param('{"a":' * 50_000 + "1" + "}" * 50_000, id="text-deep-dict"),
        pytest.param('{"all": [{"counter": "collect_wood", "at_least": 1}], "ordered": ' + "[" * 50_000 + "]" * 50_000 + "}", id="text-ordered-deep"),
        pytest.param(b"[" * 100_000, id="bytes-deep"),
    ],
)
def test_spec_deep_nesting(value):
    assert check_spec(value) is None


@pytest.mark.parametrize("bound", ["at_least", "at_most"])
@pytest.mark.parametrize("number", [*HUGE_INTS, 1e300, -1e300, 1e308 * 10, math.nan, MAX_COUNT, MAX_COUNT + 1],
                         ids=lambda v: f"{'-' if v < 0 else ''}2^{v.bit_length()}" if isinstance(v, int) else repr(v))
def test_spec_huge_counts(bound, number):
    spec = check_spec({"all": [{"counter": "collect_wood", bound: number}]})
    assert (spec is not None) == (isinstance(number, int) and 0 <= number <= MAX_COUNT)
    spec = check_spec({"all": [{"counter": "collect_wood", "at_least": 1}], "within": number})
    assert (spec is not None) == (isinstance(number, int) and 1 <= number <= MAX_WITHIN)
    if not (isinstance(number, int) and abs(number) >= 10**4000):  # json cannot write those
        check_spec(json.dumps({"all": [{"counter": "collect_wood", bound: number}], "within": number}))
    # A 5000-digit number in JSON text is refused by the JSON decoder itself.
    check_spec('{"all": [{"counter": "collect_wood", "at_least": ' + "9" * 5000 + "}]}")


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.sampled_from(["all", "none"]))
def test_spec_unicode_counter_names(name, where):
    clause = {"counter": name, "at_least": 1}
    spec = {"all": [clause]} if where == "all" else {"all": [{"counter": "health", "at_most": 3}], "none": [clause]}
    parsed = check_spec(spec)
    assert (parsed is not None) == (name in COUNTER_INDEX)
    assert check_spec(json.dumps(spec, ensure_ascii=False)) == parsed


@pytest.mark.parametrize(
    "key", [1, None, 2.5, ("a", "b"), True, "a\nb", "x\u2028y", "", "k" * 100_000], ids=lambda k: repr(k)[:12]
)
def test_spec_odd_keys(key):
    """Python callers may hand in dicts with any keys: they are unknown fields, named in one line."""
    check_spec({"all": [{"counter": "collect_wood", "at_least": 1}], key: 1, "zz": 1})
    check_spec({"all": [{"counter": "collect_wood", "at_least": 1, key: 1, "zz": 1}]})
    check_spec({key: 1})


# ---------------------------------------------------------------------------------------------
# 2. Suites

GOOD_LINE = {"id": "w", "text": "Collect wood.", "task": {"all": [{"counter": "collect_wood", "at_least": 1}]},
             "split": "test", "category": "single"}


@st.composite
def suite_objects(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": draw(st.text(min_size=1, max_size=8).filter(str.strip)),
        "text": draw(st.text(min_size=1, max_size=30).filter(str.strip)),
        "task": draw(valid_specs()),
        "split": draw(st.sampled_from(SPLITS)),
        "category": draw(st.sampled_from(["single", "count", "sequence"])),
    }
    if draw(st.booleans()):
        obj["paraphrase"] = draw(st.booleans())
    if draw(st.booleans()):
        obj[draw(st.sampled_from(sorted(obj)))] = draw(json_values)  # a near miss
    return obj


def _dump_line(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return b'{"id": 1}'


SPECIAL_LINES = [
    b"",
    b"   ",
    b"\t\r",
    b"\xef\xbb\xbf" + json.dumps(GOOD_LINE).encode(),  # BOM
    b"\xef\xbb\xbf",
    b"\xff\xfe\x00\x00",
    b"\xc3\x28",  # invalid UTF-8
    json.dumps({**GOOD_LINE, "text": "caf\u00e9"}).encode("latin-1", "replace"),
    json.dumps(GOOD_LINE).encode("utf-16"),
    b"[" * 100_000,
    b'{"a":' * 50_000,
    json.dumps({**GOOD_LINE, "split": "["}).replace('"["', "[" * 900 + "]" * 900).encode(),
    json.dumps({**GOOD_LINE, "id": "x" * 300_000}).encode(),  # a huge line
    b'{"id": ' + b"9" * 5000 + b"}",
    json.dumps({**GOOD_LINE, "a\nb": 1}).encode(),
    json.dumps({**GOOD_LINE, "split": "s" * 10_000}).encode(),
    b"NaN",
    b'{"id": "w", "id": "v"}',
]

suite_rows = st.one_of(
    suite_objects().map(_dump_line),
    json_values.map(_dump_line),
    st.binary(max_size=60),
    st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from(SPECIAL_LINES),
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check_suite_contract(path: Path, content: bytes) -> tuple[list[SuiteLine], list[SuiteError]]:
    start = time.perf_counter()
    lines, errors = check_suite(path)
    rows = content.split(b"\n")
    filled = [n for n, row in enumerate(rows, 1) if row.strip()]
    assert all(type(x) is SuiteLine for x in lines)
    assert all(type(e) is SuiteError for e in errors)
    where = re.compile(re.escape(str(path)) + r":(\d+): \S")
    error_lines = []
    for e in errors:
        msg = str(e)
        assert_one_line(msg[len(str(path)):])
        m = where.match(msg)
        if m is None:  # a file-level error, only for a file with no lines
            assert msg == f"{path}: file: has no task lines" and not filled
        else:
            error_lines.append(int(m.group(1)))
    # Every non-blank line gives exactly one good line or one error, in file order.
    assert sorted([x.line for x in lines] + error_lines) == filled
    assert error_lines == sorted(error_lines)
    assert len({x.id for x in lines}) == len(lines)
    # load_suite: the same lines, or the first error.
    try:
        loaded = load_suite(path)
    except SuiteError as e:
        assert type(e) is SuiteError and errors and str(e) == str(errors[0])
    else:
        assert not errors and loaded == lines
    assert time.perf_counter() - start < SLOW_S
    return lines, errors


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=500))
def test_suite_random_bytes(fuzz_dir, content):
    path = fuzz_dir / "bytes.jsonl"
    path.write_bytes(content)
    check_suite_contract(path, content)


@settings(max_examples=250, deadline=None)
@given(st.lists(suite_rows, max_size=8), st.sampled_from([b"\n", b"\r\n", b"\n\n"]), st.booleans())
def test_suite_random_lines(fuzz_dir, rows, sep, bom):
    content = (b"\xef\xbb\xbf" if bom else b"") + sep.join(rows)
    path = fuzz_dir / "lines.jsonl"
    path.write_bytes(content)
    check_suite_contract(path, content)


@settings(max_examples=60, deadline=None)
@given(st.lists(suite_objects(), min_size=1, max_size=5))
def test_suite_near_valid_lines(fuzz_dir, objs):
    content = b"\n".join(_dump_line(o) for o in objs) + b"\n"
    path = fuzz_dir / "near.jsonl"
    path.write_bytes(content)
    lines, _ = check_suite_contract(path, content)
    for x in lines:
        assert x.split in SPLITS and isinstance(x.paraphrase, bool)


@pytest.mark.parametrize("obj", [deep_list(), deep_dict(), {**GOOD_LINE, "split": deep_list()},
                                 {**GOOD_LINE, "paraphrase": deep_dict()}, {**GOOD_LINE, "task": deep_dict()},
                                 {**GOOD_LINE, "split": 10**5000}, {**GOOD_LINE, 7: 1}],
                         ids=["list", "dict", "split", "paraphrase", "task", "huge-split", "int-key"])
def test_suite_parse_line_deep(obj):
    """parse_line on decoded values that no JSON line could give: SpecError, one line."""
    with pytest.raises(SpecError) as e:
        parse_line(obj)
    assert type(e.value) is SpecError
    assert_one_line(str(e.value))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(suite_rows, min_size=0, max_size=5), st.sampled_from([*SPECIAL_LINES[3:], b"{", b"\xff"]))
def test_cli_tasks_check_bad_files(fuzz_dir, capsys, rows, bad):
    content = b"\n".join([*rows, bad])
    path = fuzz_dir / "cli.jsonl"
    path.write_bytes(content)
    _, errors = check_suite(path)
    assume(errors)
    capsys.readouterr()
    rc = main(["tasks", "check", str(path)])
    out, err = capsys.readouterr()
    assert rc != 0
    assert "Traceback" not in out + err
    err_lines = err.splitlines()
    assert [x for x in err_lines if x.startswith("oir: error: ")] == [f"oir: error: {e}" for e in errors]
    assert len(err_lines) == len(errors) + 1  # and one summary line
    assert err_lines[-1].startswith(f"{path}: {len(errors)} problem(s)")


# ---------------------------------------------------------------------------------------------
# 3. LLM replies


def check_reply(text: Any, n: int, max_proposals: int) -> list[list[Any]]:
    """parse_reply's contract: never raises; n lists, each at most max_proposals long."""
    start = time.perf_counter()
    out = parse_reply(text, n, max_proposals)
    assert time.perf_counter() - start < SLOW_S
    assert type(out) is list and len(out) == n
    for proposals in out:
        assert type(proposals) is list and len(proposals) <= max_proposals
    if not isinstance(text, str) or not text.strip():
        assert out == [[Flawed("empty")][:max_proposals] for _ in range(n)]
    elif len(text) > MAX_REPLY_CHARS:
        assert out == [[Flawed("malformed-json")][:max_proposals] for _ in range(n)]
    return out


n_segments = st.integers(0, 5)
max_props = st.sampled_from([0, 1, 2, 32])
PROSE = st.text(st.characters(blacklist_characters="[]{}`\"\\", blacklist_categories=["Cs"]), max_size=40)
JSONISH = st.lists(  # JSON-ish token soup
    st.sampled_from([*'{}[]",:0123456789 \n-.eE`', '"segments"', '"proposals"', '"id"', '"task"', "null", "true"]),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.text() | JSONISH | st.binary().map(lambda b: b.decode("latin-1")), n_segments, max_props)
def test_reply_random_text(text, n, k):
    check_reply(text, n, k)


@settings(max_examples=200, deadline=None)
@given(dumpable, n_segments, max_props, st.sampled_from(["bare", "fenced", "prose"]))
def test_reply_random_json(value, n, k, wrap):
    text = json.dumps(value, ensure_ascii=False)
    if wrap == "fenced":
        text = f"Here you go:\n```json\n{text}\n```\nDone."
    elif wrap == "prose":
        text = f"Sure! {text} Hope this helps."
    check_reply(text, n, k)
    check_reply({"segments": value}, n, k)  # not a string at all


def _nan_free(value: Any) -> bool:
    return "nan" not in json.dumps(value).lower()


@st.composite
def well_formed_replies(draw: st.DrawFn) -> tuple[str, int, int, list[list[Any]]]:
    n = draw(st.integers(1, 5))
    k = draw(st.sampled_from([1, 3, 32]))
    proposals = [draw(st.lists(dumpable.filter(_nan_free), max_size=5)) for _ in range(n)]
    order = draw(st.permutations(range(1, n + 1)))
    body = {"segments": [{"id": i, "proposals": proposals[i - 1]} for i in order]}
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    wrap = draw(st.sampled_from(["bare", "fenced", "prose"]))
    before, after = draw(PROSE), draw(PROSE)
    if wrap == "fenced":
        text = f"{before}\n```json\n{text}\n```\n{after}"
    elif wrap == "prose":
        text = f"{before} {text} {after}"
    return text, n, k, [p[:k] for p in proposals]


@settings(max_examples=100, deadline=None)
@given(well_formed_replies())
def test_reply_well_formed_round_trip(case):
    text, n, k, expected = case
    assert check_reply(text, n, k) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 100_000, id="open-brackets"),
        pytest.param("{" * 100_000, id="open-braces"),
        pytest.param("[" * 60_000 + "]" * 60_000, id="deep-list"),
        pytest.param('{"segments": [{"id": 1, "proposals": ' + "[" * 50_000 + "]" * 50_000 + "}]}", id="deep-proposals"),
        pytest.param('{"segments": [{"id": 1, "proposals": ' + "[" * 900 + "]" * 900 + "}]}", id="near-limit"),
        pytest.param("```json\n" + "[" * 50_000 + "\n```" + "{" * 50_000, id="fenced-deep"),
        pytest.param("```" * 60_000, id="many-fences"),
        pytest.param("```json\n" * 20_000, id="unclosed-fences"),
        pytest.param("[1," * 60_000, id="long-unclosed-array"),
        pytest.param('["' + "x" * 190_000, id="unclosed-string"),
        pytest.param("{[" * 90_000, id="many-openers"),
        pytest.param('{"segments": [{"id": ' + "9" * 5000 + ', "proposals": [1]}]}', id="huge-id"),
        pytest.param('{"segments": [{"id": 1e400, "proposals": [1]}, {"id": NaN, "proposals": [2]}]}', id="inf-id"),
        pytest.param('{"segments": {"segment ' + "1" * 100_000 + '": [1]}}', id="long-key"),
        pytest.param('{"segments": {"' + " " * 100_000 + 'x": [1]}}', id="space-key"),
        pytest.param('{"segments": [{"id": 1, "proposals": [' + "1," * 60_000 + "1]}]}", id="many-proposals"),
        pytest.param("x" * (MAX_REPLY_CHARS + 1), id="too-long"),
        pytest.param('{"segments": [{"id": 1, "proposals": ["' + "\ud800" * 1000 + '"]}]}', id="lone-surrogates"),
    ],
)
def test_reply_adversarial(text):
    limit = sys.getrecursionlimit()
    for n in (0, 1, 3):
        check_reply(text, n, 32)
    assert sys.getrecursionlimit() == limit


def test_reply_many_proposals_truncated():
    text = json.dumps({"segments": [{"id": 1, "proposals": list(range(1000))}, {"id": 2, "proposals": []}]})
    assert check_reply(text, 2, 32) == [list(range(32)), []]
    assert check_reply(text, 3, 5) == [list(range(5)), [], [Flawed("empty")]]
