"""Every validated name refuses a trailing newline.

``re.match(r"^...$")`` accepts ``"app1_blue\\n"`` because ``$`` also matches
before a final newline; such a name then reaches a config file, a socket
command or a log line as two lines. Each validator in ``_utils/`` uses
``fullmatch``; this table feeds each one a good name (accepted, so the
refusal below is not a refusal of everything) and the same name with a
trailing newline (refused with ValueError, or Rejected for event tags).
"""

import pytest

import hx_apps
import hx_checks
import hx_haproxy
import hx_incidents
import hx_paths
import hx_releases
import hx_remediation
import hx_services
import hx_windows


class _Cache:
    def __init__(self, keys):
        self.keys = keys

    def list(self, bank):  # noqa: A003 - salt.cache's name
        return list(self.keys)


def _incident_ids(inc_id):
    """Store.ids() is how stored incident ids are validated: a bad one is not listed."""
    ids = hx_incidents.Store(_Cache([inc_id]), lock=None).ids()
    if ids != [inc_id]:
        raise ValueError(f"incident id {inc_id!r} not accepted")
    return ids


def _window(name):
    return hx_windows.validate_window({"name": name, "start": "02:00", "end": "04:00"}, 0)


def _member(name):
    return hx_releases.check_member(name, "file")


def _cleanup_dir(name):
    return hx_paths.cleanup_dir(f"/tmp/{name}")


def _check(name):
    return hx_checks.normalize([{"name": name, "kind": "tcp", "host": "127.0.0.1", "port": 80}])


def _policy_sls(sls):
    return hx_remediation.policy({"actions": {"disk": {"action": "state", "sls": sls}}})


def _event_tag(name):
    return hx_remediation.parse_event(f"salt/beacon/m1/hx_health/{name}", {"id": "m1"})


def _app_key(key):
    def check(value):
        return hx_apps.validate("app1", {"hosts": {"m1": "10.0.0.1"}, "lbs": ["lb1"], key: value})
    return check


VALIDATORS = {
    "hx_apps.validate (backend)": (_app_key("backend"), "app1_be"),
    "hx_apps.validate (server template)": (_app_key("server"), "{host}-{color}"),
    "hx_apps.lookup (app)": (lambda v: hx_apps.lookup({v: {"hosts": {"m1": "10.0.0.1"}, "lbs": ["lb1"]}}, v), "app1"),
    "hx_releases.validate_app": (hx_releases.validate_app, "app1"),
    "hx_releases.validate_version": (hx_releases.validate_version, "1.2.3-rc.1"),
    "hx_releases.validate_slot": (hx_releases.validate_slot, "blue"),
    "hx_releases.check_member (archive member)": (_member, "static/app.css"),
    "hx_haproxy.validate_name (backend/server)": (lambda v: hx_haproxy.validate_name("server", v), "app1_blue"),
    "hx_services.validate_service": (lambda v: hx_services.validate_service(v, {}), "app1-blue"),
    "hx_checks.normalize (check name)": (_check, "app1_http"),
    "hx_windows.validate_window (window name)": (_window, "nightly"),
    "hx_remediation.policy (action sls)": (_policy_sls, "hx.cleanup.disk"),
    "hx_remediation.parse_event (beacon tag)": (_event_tag, "disk_probe:disk:/"),
    "hx_incidents.Store.ids (incident id)": (_incident_ids, "INC-1732900000-web1"),
    "hx_paths.cleanup_dir (cleanup directory)": (_cleanup_dir, "app1"),
}


@pytest.mark.parametrize("validator", sorted(VALIDATORS))
def test_good_name_is_accepted(validator):
    func, good = VALIDATORS[validator]
    func(good)


@pytest.mark.parametrize("validator", sorted(VALIDATORS))
def test_trailing_newline_is_refused(validator):
    func, good = VALIDATORS[validator]
    with pytest.raises((ValueError, hx_remediation.Rejected)):
        func(good + "\n")


@pytest.mark.parametrize("key, value, match", [
    ("backend", "app1 be", r"hx:apps:app1: backend: invalid name"),
    ("backend", "be;disable server x", r"hx:apps:app1: backend: invalid name"),
    ("server", "{host} {color}", r"hx:apps:app1: server: invalid name"),
    ("server", "{host}_{color}_{0}", r"hx:apps:app1: server: template may only use"),
    ("server", ["{host}", "{color}"], r"hx:apps:app1: server: template must contain"),
])
def test_app_backend_and_server_names_reach_haproxy_only_when_valid(key, value, match):
    with pytest.raises(ValueError, match=match):
        _app_key(key)(value)
