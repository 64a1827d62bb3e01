"""
Maintenance window transitions as events.

.. code-block:: yaml

    # pillar
    beacons:
      hx_maint:
        - interval: 30

Each run asks ``hx_maint.window_open`` (pillar ``hx:maintenance``) whether the
minion's maintenance gate is open.  Only a change fires, once, under two tags
carrying the same data:

* ``hx/maint/<minion>/window/open`` / ``.../close`` — the public tag, sent with
  ``event.send`` (beacons can only emit under ``salt/beacon/``);
* ``salt/beacon/<minion>/hx_maint/window/open`` / ``.../close`` — the regular
  beacon event.

The last seen state is kept in ``<cachedir>/hx/maint_beacon.json`` so a
beacon refresh (every pillar refresh) or a minion restart neither loses nor
repeats a transition; the very first run only records the state.  A bad
window configuration fires ``.../window/error`` once per distinct message
and logs it once; the beacon never raises.
"""
import json
import logging
import os

log = logging.getLogger(__name__)

__virtualname__ = "hx_maint"

STATE_FILE = os.path.join("hx", "maint_beacon.json")
_KNOWN_KEYS = {"interval", "_beacon_name", "disable_during_state_run", "run_once", "enabled", "beacon_module"}


def __virtual__():
    return __virtualname__


def _flatten(config):
    merged = {}
    if isinstance(config, list):
        for item in config:
            if isinstance(item, dict):
                merged.update(item)
    elif isinstance(config, dict):
        merged.update(config)
    return merged


def validate(config):
    """The configuration must be a list of mappings using only known keys."""
    if not isinstance(config, list) or not all(isinstance(item, dict) for item in config):
        return False, "hx_maint beacon: configuration must be a list, e.g. [{interval: 30}]"
    unknown = sorted(set(_flatten(config)) - _KNOWN_KEYS)
    if unknown:
        return False, f"hx_maint beacon: unknown key {unknown[0]!r} (windows live in pillar hx:maintenance)"
    return True, "Valid beacon configuration"


def _state_path():
    return os.path.join(__opts__["cachedir"], STATE_FILE)


def _load():
    try:
        with open(_state_path(), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _save(data):
    path = _state_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except OSError as exc:
        log.error("hx_maint beacon: cannot save state %s: %s", path, exc)


def _emit(minion, kind, data):
    """Send the public hx/maint tag and return the beacon event for the same data."""
    tag = f"hx/maint/{minion}/window/{kind}"
    try:
        __salt__["event.send"](tag, data)
    except Exception as exc:  # pylint: disable=broad-except
        # The beacon event below still carries the transition.
        log.error("hx_maint beacon: cannot send %s: %s", tag, exc)
    return dict(data, tag=f"window/{kind}")


def beacon(config):
    """Fire on maintenance-window open/close transitions (see module doc)."""
    try:
        return _beacon()
    except Exception:  # pylint: disable=broad-except
        log.exception("hx_maint beacon: unexpected failure")
        return []


def _beacon():
    minion = __opts__.get("id")
    previous = _load()
    try:
        status = __salt__["hx_maint.window_open"]()
    except Exception as exc:  # pylint: disable=broad-except
        message = str(exc)
        if previous and previous.get("error") == message:
            return []
        log.error("hx_maint beacon: bad maintenance window configuration: %s", message)
        _save(dict(previous or {}, error=message))
        return [_emit(minion, "error", {"minion": minion, "error": message})]

    current = {"open": bool(status["open"]), "window": status["window"], "error": None}
    _save(current)
    if previous is None or "open" not in previous:
        log.info("hx_maint beacon: first observation: window %s", "open" if current["open"] else "closed")
        return []
    if previous.get("open") == current["open"]:
        return []
    data = {
        "minion": minion,
        "open": current["open"],
        "window": status["window"] if current["open"] else previous.get("window"),
        "reason": status["reason"],
        "at": status["at"],
        "closes_at": status["closes_at"],
        "next_open": status["next_open"],
        "next_window": status["next_window"],
    }
    return [_emit(minion, "open" if current["open"] else "close", data)]
