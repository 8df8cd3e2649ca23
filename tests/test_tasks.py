"""Task specs: parser, Python evaluator semantics, and JAX/Python agreement (hypothesis)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from oir import tasks
from oir.events import COUNTER_INDEX, COUNTER_NAMES, NUM_COUNTERS, NUM_EVENTS, NUM_LEVELS
from oir.tasks import Clause, SpecError, TaskSpec, evaluate, parse_spec

DOC_EXAMPLE = {
    "all": [{"counter": "collect_wood", "at_least": 3}, {"counter": "place_table", "at_least": 1}],
    "ordered": True,
    "none": [{"counter": "eat_cow", "at_least": 1}],
    "within": 300,
}


def test_parse_doc_example_and_defaults():
    spec = parse_spec(DOC_EXAMPLE)
    assert spec.ordered and spec.within == 300 and spec.none[0].counter == "eat_cow"
    minimal = parse_spec('{"all": [{"counter": "collect_wood", "at_least": 1}]}')
    assert minimal == TaskSpec(all=(Clause("collect_wood", at_least=1),))
    assert parse_spec({"all": [{"counter": "health", "at_least": 3.0}], "none": None, "within": None}).all[0].at_least == 3
    assert parse_spec(minimal.to_json()) == minimal
    assert json.loads(parse_spec(DOC_EXAMPLE).key()) == DOC_EXAMPLE


@pytest.mark.parametrize(
    "spec,field",
    [
        ({"all": [{"counter": "collect_woood", "at_least": 1}]}, "all[0].counter"),
        ({"all": [{"counter": "collect_wood", "at_least": -1}]}, "all[0].at_least"),
        ({"all": []}, "all"),
        ({}, "all"),
        ({"all": "wood"}, "all"),
        ({"all": [{"counter": "collect_wood"}]}, "all[0]"),
        ({"all": [{"counter": "collect_wood", "at_least": 1, "at_most": 2}]}, "all[0]"),
        ({"all": [{"counter": "collect_wood", "at_least": "3"}]}, "all[0].at_least"),
        ({"all": [{"counter": "collect_wood", "at_least": True}]}, "all[0].at_least"),
        ({"all": [{"counter": "collect_wood", "at_least": 1.5}]}, "all[0].at_least"),
        ({"all": [{"counter": "collect_wood", "at_least": 10**12}]}, "all[0].at_least"),
        ({"all": [{"counter": "collect_wood", "at_least": 1}], "ordered": "yes"}, "ordered"),
        ({"all": [{"counter": "collect_wood", "at_least": 1}], "within": 0}, "within"),
        ({"all": [{"counter": "collect_wood", "at_least": 1}], "none": [{"counter": "x", "at_least": 1}]}, "none[0].counter"),
        ({"all": [{"counter": "collect_wood", "at_least": 1}], "ordred": True}, "ordred"),
        ({"all": [{"counter": "collect_wood", "at_least": 1}] * 9}, "all"),
        ("{not json", "task"),
        ("[1, 2]", "task"),
    ],
)
def test_parse_rejects_with_field(spec, field):
    with pytest.raises(SpecError) as e:
        parse_spec(spec)
    assert e.value.field == field


def trace(rows: list[dict[str, int]]) -> np.ndarray:
    out = np.zeros((len(rows), NUM_COUNTERS), np.int64)
    for t, row in enumerate(rows):
        for k, v in row.items():
            out[t, COUNTER_INDEX[k]] = v
    return out


def test_evaluate_semantics_by_hand():
    spec = parse_spec(DOC_EXAMPLE)
    wood3 = {"collect_wood": 3}
    ok = trace([{"collect_wood": 1}, wood3, {**wood3, "place_table": 1}])
    assert evaluate(spec, ok) == tasks.Outcome("success", 3)
    # Table first, then wood: out of order, fails at the step the table appears.
    assert evaluate(spec, trace([{"place_table": 1}, {"place_table": 1, **wood3}])) == tasks.Outcome("fail", 1, "order")
    # Both in one step is in order.
    assert evaluate(spec, trace([{"place_table": 1, **wood3}])).status == "success"
    # A none clause fails at once, even on the step the goal is met.
    assert evaluate(spec, trace([wood3, {**wood3, "place_table": 1, "eat_cow": 1}])) == tasks.Outcome("fail", 2, "none")
    # Budget: success on step `within` counts, the step after does not exist.
    budget = parse_spec({"all": [{"counter": "collect_wood", "at_least": 1}], "within": 2})
    assert evaluate(budget, trace([{}, {"collect_wood": 1}])).status == "success"
    assert evaluate(budget, trace([{}, {}, {"collect_wood": 1}])) == tasks.Outcome("fail", 2, "budget")
    assert evaluate(budget, trace([{}])) == tasks.Outcome("pending")
    # Latching: holding 3 wood counts even after the wood is spent.
    latch = parse_spec({"all": [{"counter": "inventory_wood", "at_least": 3}, {"counter": "make_wood_pickaxe", "at_least": 1}]})
    assert evaluate(latch, trace([{"inventory_wood": 3}, {"inventory_wood": 2, "make_wood_pickaxe": 1}])).status == "success"
    at_most = parse_spec({"all": [{"counter": "collect_wood", "at_least": 2}], "none": [{"counter": "health", "at_most": 3}]})
    assert evaluate(at_most, trace([{"health": 9, "collect_wood": 1}, {"health": 3, "collect_wood": 2}])).reason == "none"
    assert evaluate(at_most, trace([{"health": 9, "collect_wood": 1}, {"health": 4, "collect_wood": 2}])).status == "success"


# ----- JAX evaluator agrees with the Python one -------------------------------------------------

TRACE_LEN = 12
# A few counters of each kind keep random traces likely to satisfy clauses.
HOT = ["collect_wood", "place_table", "eat_cow", "place_table_near_water", "inventory_wood", "health"]


clause_st = st.builds(
    lambda c, n, most: {"counter": c, ("at_most" if most else "at_least"): n},
    st.sampled_from(HOT + list(COUNTER_NAMES)), st.integers(0, 4), st.booleans(),
)
spec_st = st.builds(
    lambda a, o, n, w: {"all": a, "ordered": o, "none": n, "within": w},
    st.lists(clause_st, min_size=1, max_size=tasks.MAX_ALL),
    st.booleans(),
    st.lists(clause_st, max_size=tasks.MAX_NONE),
    st.one_of(st.none(), st.integers(1, TRACE_LEN + 2)),
)


@st.composite
def trace_st(draw):
    events = np.zeros((TRACE_LEN, NUM_EVENTS), np.int32)
    levels = np.zeros((TRACE_LEN, NUM_LEVELS), np.int32)
    for name in HOT:
        i = COUNTER_INDEX[name]
        col = draw(st.lists(st.integers(0, 2), min_size=TRACE_LEN, max_size=TRACE_LEN))
        if i < NUM_EVENTS:
            events[:, i] = np.array(col) * draw(st.booleans())
        else:
            levels[:, i - NUM_EVENTS] = np.array(draw(st.lists(st.integers(0, 9), min_size=TRACE_LEN, max_size=TRACE_LEN)))
    return events, levels


@settings(max_examples=300, deadline=None)
@given(spec_st, trace_st())
def test_jax_and_python_evaluators_agree(jax_eval, spec_json, tr):
    spec = parse_spec(spec_json)
    events, levels = tr
    py = evaluate(spec, tasks.counters_from_trace(events, levels))
    event(f"{py.status} {py.reason}")
    status, step, reason = np.asarray(jax_eval(tasks.TaskBank.from_specs([spec]), events, levels)).tolist()
    want = {"pending": 0, "success": 1, "fail": 2}[py.status]
    assert status == want, (spec_json, py)
    if py.status != "pending":
        assert step == py.step
    if py.status == "fail":
        assert tasks.FAIL_REASONS[reason] == py.reason


@settings(max_examples=100, deadline=None)
@given(st.lists(spec_st, min_size=1, max_size=8), trace_st(), st.integers(0, TRACE_LEN))
def test_many_specs_at_once_match_one_at_a_time(specs_json, tr, cut):
    # Verification checks every proposal of a segment in one pass: each outcome must be the one
    # the spec gets alone (which the test above checks against the JAX evaluator), also on an
    # empty or short trace.
    specs = [parse_spec(s) for s in specs_json]
    counters = tasks.counters_from_trace(*tr)[:cut]
    assert tasks.outcomes(specs, counters) == [evaluate(s, counters) for s in specs]
    assert tasks.first_successes(specs, counters) == [tasks.first_success(s, counters) for s in specs]
