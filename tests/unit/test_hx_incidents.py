"""Incident classification, state machine, dedupe, escalation timing, report (pure)."""
import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hx_incidents as h

T0 = 1_700_000_000.0
LEVELS = h.parse_levels([{"name": "L1"}, {"name": "L2"}, {"name": "L3"}])


def incident(itype="service_down", status="critical", now=T0, **kw):
    cls = h.classify(itype, status)
    return h.new_incident(h.make_id(now, "web1"), "web1", kw.pop("check", "app_http"), kw.pop("resource", "app"),
                          cls, now, "app down", status=status, **kw)


# -- classification: the Ansible table (review, acceptance case 11) ----------------


@pytest.mark.parametrize(
    "itype, status, severity, priority, escalate",
    [
        ("service_down", "critical", "critical", "P1", True),   # nginx down -> P1, escalated
        ("disk", "critical", "critical", "P1", True),           # disk 95 -> P1, escalated
        ("disk", "warning", "medium", "P3", False),             # disk 85: not the Ansible P1
        ("memory", "critical", "high", "P2", False),            # memory 90 -> P2, not escalated
        ("cpu", "critical", "high", "P2", False),
        ("endpoint_failure", "critical", "high", "P2", False),  # /health 500 -> P2, remediated
        ("disk_forecast", "warning", "medium", "P3", False),
        ("config_error", "config_error", "low", "P4", False),
        ("unknown", "critical", "medium", "P3", False),
    ],
)
def test_default_classification(itype, status, severity, priority, escalate):
    assert h.classify(itype, status) == {"type": itype, "severity": severity, "priority": priority, "escalate": escalate}


def test_rules_first_match_wins_and_status_narrows():
    rules = h.validate_rules([
        {"type": "cpu", "status": "warning", "severity": "low"},
        {"type": "cpu", "severity": "critical", "escalate": True},
    ])
    assert h.classify("cpu", "warning", rules)["priority"] == "P4"
    assert h.classify("cpu", "critical", rules) == {"type": "cpu", "severity": "critical", "priority": "P1", "escalate": True}
    # no rule for disk: its registry default, not the lowest (a rule about cpu leaves disk alone)
    assert h.classify("disk", "critical", rules) == {"type": "disk", "severity": "critical", "priority": "P1",
                                                     "escalate": True}


@pytest.mark.parametrize(
    "rules, match",
    [
        ({"type": "cpu"}, "must be a list of rules"),
        ([{"type": "cpu", "severity": "urgent"}], r"\[0\]: severity must be one of"),
        ([{"type": "gpu", "severity": "high"}], r"\[0\]: type must be one of"),
        ([{"type": "cpu", "severity": "high", "escalate": "yes"}], "escalate must be true or false"),
        ([{"type": "cpu", "severity": "high", "sevrity": "x"}], "unknown key 'sevrity'"),
    ],
)
def test_bad_rules_name_the_key(rules, match):
    with pytest.raises(ValueError, match=match):
        h.validate_rules(rules)


def test_output_sorted_by_priority_then_age():
    a = dict(incident("cpu", now=T0), id="a")
    b = dict(incident("service_down", now=T0 + 5), id="b")
    c = dict(incident("service_down", now=T0 + 1), id="c")
    assert [i["id"] for i in h.sort_by_priority([a, b, c])] == ["c", "b", "a"]


# -- identity and dedupe ----------------------------------------------------------


def test_ids_follow_the_ansible_scheme_and_never_collide():
    assert h.make_id(T0 + 0.9, "web1") == "INC-1700000000-web1"
    taken = {"INC-1700000000-web1", "INC-1700000000-web1-2"}
    assert h.make_id(T0, "web1", taken) == "INC-1700000000-web1-3"
    assert h.make_id(T0, "we b/1") == "INC-1700000000-we_b_1"
    assert h.ID_RE.fullmatch(h.make_id(T0, "db.example.com"))


def test_dedupe_key_is_per_minion_check_resource():
    assert h.dedupe_key("m", "system:disk:/", "/") != h.dedupe_key("m", "system:disk:/var", "/var")
    assert h.dedupe_key("m", "c") == h.dedupe_key("m", "c", None) == "m|c|"
    assert len(h.dedupe_slot("m|c|")) == 32 and "/" not in h.dedupe_slot("m|system:disk:/|/")


def test_repeats_are_counted_and_the_timeline_stays_bounded():
    inc = incident()
    for n in range(1, 26):
        inc = h.note_repeat(inc, T0 + n)
    assert inc["repeats"] == 25 and inc["last_seen"] == T0 + 25
    assert sum(1 for e in inc["timeline"] if e["kind"] == "repeat") == h.TIMELINE_REPEAT_CAP


# -- state machine ------------------------------------------------------------------


def test_lifecycle_open_remediating_resolved():
    inc = incident()
    assert inc["status"] == "open" and [e["kind"] for e in inc["timeline"]] == ["detected", "classified"]
    inc = h.transition(inc, "remediating", T0 + 1)
    inc = h.transition(inc, "resolved", T0 + 3, note="recovered")
    assert inc["status"] == "resolved" and inc["resolved_at"] == T0 + 3 and inc["resolution"] == "recovered"
    assert h.durations(inc) == {"time_to_detect_s": 0.0, "time_to_recover_s": 3.0}


@pytest.mark.parametrize(
    "path, bad",
    [
        (["resolved"], "open"),
        (["resolved"], "acknowledged"),
        (["escalated", "acknowledged"], "escalated"),  # an ack stops escalation for good
        (["acknowledged"], "escalated"),
        ([], "closed"),
    ],
)
def test_illegal_moves_are_refused(path, bad):
    inc = incident()
    for status in path:
        inc = h.transition(inc, status, T0)
    with pytest.raises(ValueError):
        h.transition(inc, bad, T0)


def test_transition_does_not_mutate_its_input():
    inc = incident()
    h.transition(inc, "remediating", T0)
    assert inc["status"] == "open"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(h.STATUSES), max_size=8))
def test_any_sequence_stays_inside_the_state_machine(moves):
    inc = incident()
    for status in moves:
        try:
            new = h.transition(inc, status, T0)
        except ValueError:
            assert status not in h.TRANSITIONS[inc["status"]]
            continue
        assert status in h.TRANSITIONS[inc["status"]]
        inc = new
    assert inc["status"] in h.STATUSES
    if inc["status"] == "resolved":
        assert inc["resolved_at"] is not None


# -- escalation ------------------------------------------------------------------


def test_escalation_levels_and_timeout_edges():
    inc = h.escalate(incident(), T0, LEVELS, 300, "remediation failed")
    assert (inc["status"], inc["level"], inc["next_escalation_at"]) == ("escalated", 1, T0 + 300)
    assert not h.escalation_due(inc, T0 + 299.999)
    assert h.escalation_due(inc, T0 + 300)  # the edge is inclusive
    inc = h.escalate(inc, T0 + 300, LEVELS, 300, "no ack")
    inc = h.escalate(inc, T0 + 600, LEVELS, 300, "no ack")
    assert inc["level"] == 3 and inc["next_escalation_at"] is None  # top level: nothing further due
    assert not h.escalation_due(inc, T0 + 10_000)
    with pytest.raises(ValueError, match="top level L3"):
        h.escalate(inc, T0 + 900, LEVELS, 300, "again")
    assert [e["level"] for e in inc["timeline"] if e["kind"] == "escalation"] == ["L1", "L2", "L3"]


def test_ack_stops_escalation_and_records_who():
    inc = h.escalate(incident(), T0, LEVELS, 300, "failed")
    inc = h.transition(inc, "acknowledged", T0 + 10, by="alice")
    assert inc["acknowledged_by"] == "alice" and inc["next_escalation_at"] is None
    assert not h.escalation_due(inc, T0 + 10_000)
    with pytest.raises(ValueError):
        h.escalate(inc, T0 + 400, LEVELS, 300, "no")


def test_ansible_acceptance_13_timeout_300_then_l2():
    cfg = h.config()
    assert cfg["escalation_timeout"] == 300.0
    inc = h.escalate(incident(), T0, cfg["levels"], cfg["escalation_timeout"], "failed")
    assert inc["next_escalation_at"] == T0 + 300
    assert h.escalate(inc, T0 + 300, cfg["levels"], 300, "no ack")["level"] == 2


# -- configuration ------------------------------------------------------------------


def test_the_documented_maintenance_rule_is_accepted_and_leaves_other_types_at_their_defaults():
    cfg = h.config({"classification": [{"type": "maintenance", "severity": "high", "escalate": True}]})
    assert cfg["errors"] == []
    assert h.classify("maintenance", "critical", cfg["classification"])["escalate"] is True
    assert h.classify("service_down", "critical", cfg["classification"])["priority"] == "P1"


def test_maintenance_pages_by_default():
    assert h.classify("maintenance", "critical", h.config()["classification"]) == {
        "type": "maintenance", "severity": "high", "priority": "P2", "escalate": True}


@pytest.mark.parametrize("layer, pillar, key", [
    ({"classification": [{"type": "maintenance", "severity": "urgent"}]}, None, r"hx_incident:classification\[0\]"),
    ({"classification": [{"type": "mainten", "severity": "high"}]}, None, r"hx_incident:classification\[0\]: type"),
    (None, {"classification": [{"type": "cpu", "severity": "high"}, {"typ": "x"}]}, r"hx:incidents:classification\[1\]"),
    (None, {"classification": "cpu=high"}, "hx:incidents:classification must be a list"),
])
def test_a_bad_rule_is_refused_naming_its_key_and_the_rest_still_works(layer, pillar, key):
    cfg = h.config(layer, pillar=pillar)
    assert len(cfg["errors"]) == 1 and re.search(key, cfg["errors"][0]), cfg["errors"]
    assert "refused" in cfg["errors"][0]
    assert cfg["classification"] == []  # nothing of the refused list is applied
    assert h.classify("service_down", "critical", cfg["classification"])["priority"] == "P1"


def test_a_bad_pillar_list_falls_back_to_the_masters_rules():
    cfg = h.config({"classification": [{"type": "cpu", "severity": "critical"}]},
                   pillar={"classification": [{"type": "cpu", "severity": "nope"}]})
    assert "hx:incidents:classification[0]" in cfg["errors"][0] and "master's rules" in cfg["errors"][0]
    assert h.classify("cpu", "warning", cfg["classification"])["severity"] == "critical"


def test_pillar_escalation_timeout_is_named_as_pillar():
    with pytest.raises(ValueError, match="hx:incidents:escalation_timeout must be"):
        h.config(pillar={"escalation_timeout": -1})


def test_config_layers_and_pillar_limits():
    cfg = h.config({"escalation_timeout": 60}, None, pillar={"escalation_timeout": 30})
    assert cfg["escalation_timeout"] == 30.0 and cfg["on_open"] == []
    with pytest.raises(ValueError, match="hx:incidents:channels: not allowed in pillar"):
        h.config(pillar={"channels": {}})
    with pytest.raises(ValueError, match=r"levels\[0\] \(L1\): unknown channel 'pd'"):
        h.config({"levels": [{"name": "L1", "notify": ["pd"]}]})
    with pytest.raises(ValueError, match="escalation_timeout must be"):
        h.config({"escalation_timeout": 0})
    with pytest.raises(ValueError, match="hx_incident:escalation: unknown key"):
        h.config({"escalation": 1})


def test_counts_only_count_real_resolutions():
    # Acceptance 12: "resolved" rises only when the incident really was resolved.
    fixed = h.transition(incident(), "resolved", T0 + 1)
    failed = h.escalate(incident(now=T0 + 1), T0 + 2, LEVELS, 300, "failed")
    counts = h.counts([fixed, failed])
    assert counts == {"total": 2, "active": 1, "resolved": 1, "escalated": 1, "auto_resolved": 1}


def test_filters():
    inc = incident()
    assert h.matches(inc, status="active") and h.matches(inc, status="open,resolved")
    assert not h.matches(inc, status="resolved")
    assert h.matches(inc, severity="P1") and h.matches(inc, severity="critical") and not h.matches(inc, severity="P2")
    assert h.matches(inc, minion="web1") and not h.matches(inc, minion="web2")
    assert h.matches(inc, since=T0) and not h.matches(inc, since=T0 + 1)


# -- report -------------------------------------------------------------------------


def test_report_has_every_section_and_the_timeline():
    inc = incident(first_bad_at=T0 - 2)
    inc = h.transition(inc, "remediating", T0 + 1)
    h.add_timeline(inc, T0 + 2, "action", "hx_service.recover app: recovered after 1 restart(s)")
    inc = h.transition(inc, "resolved", T0 + 3, note="remediated")
    text = h.render_report(inc, T0 + 60)
    for part in ("# Post-incident report: INC-1700000000-web1", "## Summary", "## Impact", "## Detection",
                 "## Timeline (UTC)", "## Remediation actions and outcome", "## Root cause", "## Action items",
                 "Time to detect:** 2.0 s", "Time to recover:** 5.0 s", "recovered after 1 restart", "Blameless"):
        assert part in text, part


# -- store with a fake cache ---------------------------------------------------------


class DictCache:
    def __init__(self):
        self.data = {}

    def store(self, bank, key, data):
        self.data.setdefault(bank, {})[key] = data

    def fetch(self, bank, key):
        return self.data.get(bank, {}).get(key, {})

    def flush(self, bank, key=None):
        self.data.get(bank, {}).pop(key, None)

    def list(self, bank):
        subs = [b[len(bank) + 1:] for b in self.data if b.startswith(bank + "/")]
        return list(self.data.get(bank, {})) + subs


def test_store_keeps_one_active_incident_per_key():
    store = h.Store(DictCache(), lambda name: contextlib.nullcontext())
    inc = incident()
    store.put(inc)
    assert store.active_for(inc["dedupe"])["id"] == inc["id"]
    assert store.ids() == [inc["id"]]  # the "open" sub-bank is not an incident
    store.put(h.transition(inc, "resolved", T0 + 1))
    assert store.active_for(inc["dedupe"]) is None
    assert store.get(inc["id"])["status"] == "resolved"
