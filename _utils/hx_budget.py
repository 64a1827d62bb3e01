"""Pure restart-budget, flap and quarantine accounting for ``hx_service.recover``.

All functions take ``now`` (epoch seconds) from the caller and never read the
clock, so every edge is testable with plain numbers.

Per-service state (JSON-safe, persisted by the module)::

    {
      "attempts": [            # one per restart hx made, oldest first
        {"ts": 1700000000.0,   # when the restart began
         "done": 1700000002.1, # when the outcome was known
         "outcome": "recovered" | "failed",
         "ms": 2100,           # restart -> healthy (or -> gave up)
         "relapse_after": 41.0 | None},  # s from "done" to the next failure seen
      ],
      "quarantine": None | {"since": ts, "reason": "budget" | "flapping", "detail": str},
      "released_at": None | ts, # attempts at/before this no longer count
    }

Window rule: an attempt counts against the budget when
``now - window < ts <= now`` -- the old edge is exclusive (an attempt exactly
``window`` seconds old has expired), the new edge inclusive.

Clock skew: a timestamp later than ``now`` (the clock went backwards, or the
file came from another host) is re-stamped to ``now`` by :func:`normalize`. It
therefore still counts (a restart that happened must not be forgotten), and it
ages out ``window`` seconds after the correction instead of staying "in the
future" for as long as the skew lasts.

Flapping: a recovery "relapses" when the next failure is seen within
``flap.window`` seconds of its ``done`` time. ``flap.count`` consecutive
relapsed recoveries (since the last release) mean the service is flapping.
"""

import copy

import hx_numbers

DEFAULT_BUDGET = {"max": 3, "window": 900}
DEFAULT_FLAP = {"count": 3, "window": 300}
HISTORY_CAP = 100
OUTCOMES = ("recovered", "failed")
QUARANTINE_REASONS = ("budget", "flapping")


def _num(value, what, minimum=0, integer=False, strict=True):
    if not hx_numbers.is_finite(value):
        raise ValueError(f"{what} must be a number, got {hx_numbers.shown(value)}")
    if integer and int(value) != value:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if (value <= minimum) if strict else (value < minimum):
        cmp = ">" if strict else ">="
        raise ValueError(f"{what} must be {cmp} {minimum}, got {value!r}")
    return int(value) if integer else float(value)


def parse_budget(value, what="budget"):
    """``{"max": int >= 1, "window": seconds > 0}``, defaults filled in."""
    if value is None:
        return dict(DEFAULT_BUDGET)
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a mapping with max/window, got {value!r}")
    unknown = set(value) - {"max", "window"}
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {sorted(unknown)}")
    return {
        "max": _num(value.get("max", DEFAULT_BUDGET["max"]), f"{what}.max", 0, integer=True),
        "window": _num(value.get("window", DEFAULT_BUDGET["window"]), f"{what}.window"),
    }


def parse_flap(value, what="flap"):
    """``{"count": int >= 1, "window": seconds > 0}``, defaults filled in."""
    if value is None:
        return dict(DEFAULT_FLAP)
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a mapping with count/window, got {value!r}")
    unknown = set(value) - {"count", "window"}
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {sorted(unknown)}")
    return {
        "count": _num(value.get("count", DEFAULT_FLAP["count"]), f"{what}.count", 0, integer=True),
        "window": _num(value.get("window", DEFAULT_FLAP["window"]), f"{what}.window"),
    }


def empty_state():
    return {"attempts": [], "quarantine": None, "released_at": None}


def from_dict(data):
    """Validate a persisted state; raises ValueError on anything malformed."""
    if data is None:
        return empty_state()
    if not isinstance(data, dict):
        raise ValueError(f"recovery state must be a mapping, got {type(data).__name__}")
    state = empty_state()
    attempts = data.get("attempts", [])
    if not isinstance(attempts, list):
        raise ValueError("recovery state: attempts must be a list")
    for i, att in enumerate(attempts):
        if not isinstance(att, dict):
            raise ValueError(f"recovery state: attempts[{i}] must be a mapping")
        if att.get("outcome") not in OUTCOMES:
            raise ValueError(f"recovery state: attempts[{i}].outcome {att.get('outcome')!r}")
        ts = _num(att.get("ts"), f"attempts[{i}].ts", 0, strict=False)
        done = _num(att.get("done", ts), f"attempts[{i}].done", 0, strict=False)
        relapse = att.get("relapse_after")
        if relapse is not None:
            relapse = _num(relapse, f"attempts[{i}].relapse_after", 0, strict=False)
        state["attempts"].append(
            {
                "ts": ts,
                "done": done,
                "outcome": att["outcome"],
                "ms": int(_num(att.get("ms", 0), f"attempts[{i}].ms", 0, strict=False)),
                "relapse_after": relapse,
            }
        )
    quar = data.get("quarantine")
    if quar is not None:
        if not isinstance(quar, dict) or quar.get("reason") not in QUARANTINE_REASONS:
            raise ValueError(f"recovery state: bad quarantine {quar!r}")
        state["quarantine"] = {
            "since": _num(quar.get("since"), "quarantine.since", 0, strict=False),
            "reason": quar["reason"],
            "detail": str(quar.get("detail", "")),
        }
    rel = data.get("released_at")
    if rel is not None:
        state["released_at"] = _num(rel, "released_at", 0, strict=False)
    return state


def to_dict(state):
    """JSON-safe deep copy (the state is plain data already; copy to decouple)."""
    return copy.deepcopy(state)


def normalize(state, now):
    """Re-stamp future timestamps to ``now``; cap history. Returns (state, n_corrected)."""
    state = copy.deepcopy(state)
    fixed = 0
    for att in state["attempts"]:
        for key in ("ts", "done"):
            if att[key] > now:
                att[key] = float(now)
                fixed += 1
    for key in ("released_at",):
        if state.get(key) is not None and state[key] > now:
            state[key] = float(now)
            fixed += 1
    if state.get("quarantine") and state["quarantine"]["since"] > now:
        state["quarantine"]["since"] = float(now)
        fixed += 1
    state["attempts"] = state["attempts"][-HISTORY_CAP:]
    return state, fixed


def _live(state):
    """Attempts made after the last release (older ones are history only)."""
    rel = state.get("released_at")
    return [a for a in state["attempts"] if rel is None or a["ts"] > rel]


def in_window(state, now, budget):
    """Attempts counting against the budget: ``now - window < ts <= now``."""
    low = now - budget["window"]
    return [a for a in _live(state) if low < a["ts"] <= now]


def remaining(state, now, budget):
    return max(0, budget["max"] - len(in_window(state, now, budget)))


def note_failure(state, now, flap):
    """The service was seen failing at ``now``: mark the last recovery's relapse.

    Only the most recent attempt is considered, and only if it recovered and
    has no relapse recorded yet (one failure observation per recovery).
    """
    state = copy.deepcopy(state)
    live = _live(state)
    if live:
        last = live[-1]
        if last["outcome"] == "recovered" and last["relapse_after"] is None:
            last["relapse_after"] = max(0.0, float(now) - last["done"])
    return state


def flapping(state, flap):
    """``(bool, detail)``: the last ``flap.count`` recoveries all relapsed fast."""
    recovered = [a for a in _live(state) if a["outcome"] == "recovered"]
    tail = recovered[-flap["count"]:]
    if len(tail) < flap["count"]:
        return False, ""
    if all(a["relapse_after"] is not None and a["relapse_after"] <= flap["window"] for a in tail):
        gaps = ", ".join(f"{a['relapse_after']:.0f}s" for a in tail)
        return True, (
            f"{len(tail)} recoveries in a row each failed again within "
            f"{flap['window']:.0f}s (after {gaps})"
        )
    return False, ""


def record_attempt(state, ts, done, outcome, ms):
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    state = copy.deepcopy(state)
    state["attempts"].append(
        {"ts": float(ts), "done": float(done), "outcome": outcome, "ms": int(ms), "relapse_after": None}
    )
    state["attempts"] = state["attempts"][-HISTORY_CAP:]
    return state


def quarantine(state, now, reason, detail):
    if reason not in QUARANTINE_REASONS:
        raise ValueError(f"reason must be one of {QUARANTINE_REASONS}")
    state = copy.deepcopy(state)
    state["quarantine"] = {"since": float(now), "reason": reason, "detail": detail}
    return state


def release(state, now):
    """Lift the quarantine and start a fresh budget (history is kept)."""
    state = copy.deepcopy(state)
    state["quarantine"] = None
    state["released_at"] = float(now)
    return state


def decide(state, now, budget, flap):
    """What ``recover`` may do now, for a service that is failing.

    Returns ``{"action": "restart" | "quarantine" | "quarantined", "reason",
    "detail", "remaining"}``. ``quarantine`` means: enter quarantine now
    (fire the event); ``quarantined`` means: already there, do nothing.
    """
    rem = remaining(state, now, budget)
    if state.get("quarantine"):
        q = state["quarantine"]
        return {"action": "quarantined", "reason": q["reason"], "detail": q["detail"], "remaining": rem}
    is_flap, detail = flapping(state, flap)
    if is_flap:
        return {"action": "quarantine", "reason": "flapping", "detail": detail, "remaining": rem}
    if rem <= 0:
        used = in_window(state, now, budget)
        return {
            "action": "quarantine",
            "reason": "budget",
            "detail": (
                f"{len(used)} restarts in the last {budget['window']:.0f}s "
                f"(budget {budget['max']})"
            ),
            "remaining": 0,
        }
    return {"action": "restart", "reason": "", "detail": "", "remaining": rem}
