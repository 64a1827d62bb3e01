"""Dependency ordering: transitive requires, diamonds, cycles, stable order."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hx_deps


GRAPH = {
    "web": ["api", "cache"],
    "api": ["db", "queue"],
    "cache": ["db"],
    "db": [],
    "queue": [],
    "worker": ["queue"],
}


@pytest.mark.parametrize(
    "targets, expected",
    [
        (["db"], ["db"]),
        (["api"], ["db", "queue", "api"]),
        # diamond: db once, before both api and cache
        (["web"], ["db", "queue", "api", "cache", "web"]),
        (["worker", "web"], ["queue", "worker", "db", "api", "cache", "web"]),
        (["web", "web"], ["db", "queue", "api", "cache", "web"]),
        ([], []),
    ],
)
def test_start_order(targets, expected):
    assert hx_deps.start_order(GRAPH, targets) == expected


def test_order_is_stable_and_follows_declaration_order():
    g = {"a": ["c", "b"], "b": [], "c": []}
    assert hx_deps.start_order(g, ["a"]) == ["c", "b", "a"]
    g2 = {"a": ["b", "c"], "b": [], "c": []}
    assert hx_deps.start_order(g2, ["a"]) == ["b", "c", "a"]


def test_stop_order_only_named_dependents_first():
    assert hx_deps.stop_order(GRAPH, ["db", "web", "api"]) == ["web", "api", "db"]
    # requirements of named services are not stopped
    assert hx_deps.stop_order(GRAPH, ["web"]) == ["web"]


@pytest.mark.parametrize(
    "graph, cycle",
    [
        ({"a": ["a"]}, "a -> a"),
        ({"a": ["b"], "b": ["a"]}, "a -> b -> a"),
        ({"x": [], "a": ["b"], "b": ["c"], "c": ["a"]}, "a -> b -> c -> a"),
    ],
)
def test_cycles_raise_naming_the_cycle(graph, cycle):
    with pytest.raises(ValueError, match=f"dependency cycle: {cycle}"):
        hx_deps.start_order(graph, list(graph))
    assert " -> ".join(hx_deps.find_cycle(graph)) == cycle


def test_cycle_elsewhere_in_graph_is_still_an_error():
    # a plan that touches only "x" still refuses a pillar with a cycle
    with pytest.raises(ValueError, match="cycle"):
        hx_deps.start_order({"x": [], "a": ["b"], "b": ["a"]}, ["x"])


@pytest.mark.parametrize(
    "graph, targets, match",
    [
        (GRAPH, ["nope"], r"unknown service 'nope' \(requested\)"),
        ({"a": ["ghost"]}, ["a"], r"unknown service 'ghost' \(required by 'a'\)"),
    ],
)
def test_unknown_services(graph, targets, match):
    with pytest.raises(ValueError, match=match):
        hx_deps.start_order(graph, targets)


def test_chain_and_dependents():
    assert hx_deps.requires_chain(GRAPH, "web") == ["db", "queue", "api", "cache"]
    assert hx_deps.dependents(GRAPH, "db") == ["web", "api", "cache"]
    assert hx_deps.dependents(GRAPH, "web") == []


def test_deep_chain_does_not_hit_recursion_limit():
    n = 5000
    g = {f"s{i}": ([f"s{i + 1}"] if i + 1 < n else []) for i in range(n)}
    order = hx_deps.start_order(g, ["s0"])
    assert order[0] == f"s{n - 1}" and order[-1] == "s0"


@st.composite
def dags(draw):
    n = draw(st.integers(1, 12))
    names = [f"n{i}" for i in range(n)]
    # edges only to higher indexes: acyclic by construction
    return {
        names[i]: draw(st.lists(st.sampled_from(names[i + 1:]), unique=True)) if i + 1 < n else []
        for i in range(n)
    }


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_property_every_requirement_comes_first_and_once(graph, data):
    targets = data.draw(st.lists(st.sampled_from(sorted(graph)), min_size=1))
    order = hx_deps.start_order(graph, targets)
    assert len(order) == len(set(order))
    pos = {n: i for i, n in enumerate(order)}
    for name in order:
        for req in graph[name]:
            assert pos[req] < pos[name]
    assert set(targets) <= set(order)
    assert order == hx_deps.start_order(graph, targets)  # deterministic
    stop = hx_deps.stop_order(graph, targets)
    assert set(stop) == set(targets)
    spos = {n: i for i, n in enumerate(stop)}
    for name in stop:
        for req in hx_deps.requires_chain(graph, name):
            if req in spos:
                assert spos[name] < spos[req]
