"""Pure dependency ordering for hx services.

``graph`` is always a mapping ``{service: [required service, ...]}``. Order is
stable: targets are visited in the order given and each service's requires in
the order declared, so the same pillar always gives the same plan (operators
compare plans between runs; a set-iteration order would make them differ).
"""

__all__ = ["start_order", "stop_order", "requires_chain", "dependents", "find_cycle"]


def _check_known(graph, names, what):
    for name in names:
        if name not in graph:
            raise ValueError(f"unknown service '{name}' ({what})")


def find_cycle(graph):
    """Return the first dependency cycle as a list ``[a, b, ..., a]`` or None."""
    state = {}  # name -> "visiting" | "done"
    for root in graph:
        if state.get(root) == "done":
            continue
        # Iterative DFS: a deep chain in pillar must not hit the recursion limit.
        stack = [(root, iter(graph.get(root) or ()))]
        path = [root]
        state[root] = "visiting"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = "done"
                continue
            if child not in graph:
                continue  # unknown names are reported by the callers, with context
            if state.get(child) == "visiting":
                return path[path.index(child):] + [child]
            if state.get(child) is None:
                state[child] = "visiting"
                stack.append((child, iter(graph.get(child) or ())))
                path.append(child)
    return None


def _raise_on_cycle(graph):
    cycle = find_cycle(graph)
    if cycle:
        raise ValueError("dependency cycle: " + " -> ".join(cycle))


def start_order(graph, targets):
    """Services to start for ``targets``, requirements first, transitive.

    A diamond (``a`` requires ``b`` and ``c``, both require ``d``) lists ``d``
    once, before ``b`` and ``c``. Raises ValueError naming an unknown service
    (target or a requires entry) or the cycle.
    """
    targets = list(targets)
    _check_known(graph, targets, "requested")
    for name, reqs in graph.items():
        for req in reqs or ():
            if req not in graph:
                raise ValueError(f"unknown service '{req}' (required by '{name}')")
    _raise_on_cycle(graph)
    order, seen = [], set()
    for target in targets:
        if target in seen:
            continue
        stack = [(target, iter(graph.get(target) or ()))]
        seen.add(target)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                order.append(node)
                continue
            if child not in seen:
                seen.add(child)
                stack.append((child, iter(graph.get(child) or ())))
    return order


def stop_order(graph, targets):
    """The requested services only, dependents before what they require.

    Stopping ``db`` does not stop ``web`` implicitly: hx never stops a service
    the operator did not name. Within the named set, anything that requires
    another named service is stopped first.
    """
    targets = list(dict.fromkeys(targets))
    full = start_order(graph, targets)
    wanted = set(targets)
    return [name for name in reversed(full) if name in wanted]


def requires_chain(graph, name):
    """Transitive requirements of ``name`` in start order, without ``name``."""
    return [n for n in start_order(graph, [name]) if n != name]


def dependents(graph, name):
    """Services that (transitively) require ``name``, in pillar order."""
    _check_known(graph, [name], "requested")
    out = []
    for other in graph:
        if other != name and name in requires_chain(graph, other):
            out.append(other)
    return out
