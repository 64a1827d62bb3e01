"""The incident type registry: one table, validated once, extended by each family."""
import pytest

import hx_incidents
import hx_inctypes as t
import hx_remediation


def test_every_family_registers_its_types_once():
    fams = {row["type"]: row["family"] for row in t.table()}
    assert fams["service_down"] == fams["disk"] == fams["config_error"] == "remediation"
    assert fams["maintenance"] == "maintenance" and fams["deployment"] == "deployment"
    assert t.names() == hx_incidents.TYPES and len(set(t.names())) == len(t.names())
    assert t.FALLBACK in t.names()


def test_a_maintenance_failure_is_high_and_escalates():
    assert t.default("maintenance", "critical") == {"severity": "high", "priority": "P2", "escalate": True}


def test_status_narrows_a_default_and_unknown_types_take_the_fallback():
    assert t.default("disk", "critical")["escalate"] is True
    assert t.default("disk", "warning") == {"severity": "medium", "priority": "P3", "escalate": False}
    assert t.default("gpu") == t.default(t.FALLBACK)


def test_default_rules_classify_exactly_like_the_registry():
    rules = hx_incidents.validate_rules(t.default_rules(), "defaults")
    for row in t.table():
        status = None if row["status"] == "any" else row["status"]
        got = hx_incidents.classify(row["type"], status, rules)
        assert (got["severity"], got["escalate"]) == (row["severity"], row["escalate"]), row


@pytest.mark.parametrize("args, match", [
    (("service_down", "remediation", "critical", True, "x"), "registered twice"),
    (("new_type", "remediation", "urgent", True, "x"), "severity must be one of"),
    (("new_type", "remediation", "high", "yes", "x"), "escalate must be true or false"),
    (("new_type", "billing", "high", True, "x"), "family must be one of"),
    (("*", "any", "high", True, "x"), "a name of letters"),
    (("new_type", "remediation", "high", True, "x", {"critical": {"severity": "P1", "escalate": True}}),
     "status 'critical': severity"),
])
def test_the_registry_refuses_what_the_desk_could_not_apply(args, match):
    before = t.names()
    with pytest.raises(ValueError, match=match):
        t.register(*args)
    assert t.names() == before


def test_remediation_actions_must_name_a_registered_type():
    with pytest.raises(ValueError, match="hx_remediation:actions:gpu: unknown incident type"):
        hx_remediation.policy({"actions": {"gpu": "notify"}})
    with pytest.raises(ValueError, match=r"hx:remediation:actions:disk: sls must name"):
        hx_remediation.policy(pillar={"actions": {"disk": {"action": "state", "sls": "../x"}}})
